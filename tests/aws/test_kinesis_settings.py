"""Stream settings, tags, consumers, limits and policies through boto3."""

import json

from conftest import code_of


def test_retention_increase_and_decrease(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=1)
    kinesis.increase_stream_retention_period(StreamName=stream_name, RetentionPeriodHours=72)
    assert kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]["RetentionPeriodHours"] == 72
    assert code_of(kinesis.increase_stream_retention_period, StreamName=stream_name, RetentionPeriodHours=48) == "InvalidArgumentException"
    assert code_of(kinesis.decrease_stream_retention_period, StreamName=stream_name, RetentionPeriodHours=12) == "InvalidArgumentException"
    kinesis.decrease_stream_retention_period(StreamName=stream_name, RetentionPeriodHours=24)
    assert kinesis.describe_stream(StreamName=stream_name)["StreamDescription"]["RetentionPeriodHours"] == 24


def test_tags_on_streams_and_resources(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=1)
    kinesis.add_tags_to_stream(StreamName=stream_name, Tags={"team": "data", "env": "test", "tier": "gold"})
    tags = kinesis.list_tags_for_stream(StreamName=stream_name)
    assert tags["Tags"] == [{"Key": "env", "Value": "test"}, {"Key": "team", "Value": "data"}, {"Key": "tier", "Value": "gold"}]
    page = kinesis.list_tags_for_stream(StreamName=stream_name, Limit=1, ExclusiveStartTagKey="env")
    assert page["Tags"] == [{"Key": "team", "Value": "data"}] and page["HasMoreTags"]
    kinesis.remove_tags_from_stream(StreamName=stream_name, TagKeys=["tier"])
    arn = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]["StreamARN"]
    kinesis.tag_resource(ResourceARN=arn, Tags={"owner": "me"})
    kinesis.untag_resource(ResourceARN=arn, TagKeys=["env"])
    keys = [t["Key"] for t in kinesis.list_tags_for_resource(ResourceARN=arn)["Tags"]]
    assert keys == ["owner", "team"]
    too_many = {f"k{i}": "v" for i in range(51)}
    assert code_of(kinesis.add_tags_to_stream, StreamName=stream_name, Tags=too_many) == "InvalidArgumentException"


def test_encryption_monitoring_and_record_size(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=1)
    kinesis.start_stream_encryption(StreamName=stream_name, EncryptionType="KMS", KeyId="alias/aws/kinesis")
    summary = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]
    assert (summary["EncryptionType"], summary["KeyId"]) == ("KMS", "alias/aws/kinesis")
    kinesis.stop_stream_encryption(StreamName=stream_name, EncryptionType="KMS", KeyId="alias/aws/kinesis")
    assert kinesis.describe_stream(StreamName=stream_name)["StreamDescription"]["EncryptionType"] == "NONE"

    enabled = kinesis.enable_enhanced_monitoring(StreamName=stream_name, ShardLevelMetrics=["IncomingBytes", "OutgoingRecords"])
    assert enabled["CurrentShardLevelMetrics"] == [] and sorted(enabled["DesiredShardLevelMetrics"]) == ["IncomingBytes", "OutgoingRecords"]
    disabled = kinesis.disable_enhanced_monitoring(StreamName=stream_name, ShardLevelMetrics=["IncomingBytes"])
    assert disabled["DesiredShardLevelMetrics"] == ["OutgoingRecords"]
    assert code_of(kinesis.enable_enhanced_monitoring, StreamName=stream_name, ShardLevelMetrics=["Nonsense"]) in (
        "InvalidArgumentException",
        "ValidationException",
    )

    big = b"x" * (2 * 1024 * 1024)
    assert code_of(kinesis.put_record, StreamName=stream_name, Data=big, PartitionKey="k") == "ValidationException"
    arn = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]["StreamARN"]
    kinesis.update_max_record_size(StreamARN=arn, MaxRecordSizeInKiB=4096)
    assert kinesis.put_record(StreamName=stream_name, Data=big, PartitionKey="k")["SequenceNumber"]


def test_consumers_register_describe_list_deregister(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=1)
    arn = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]["StreamARN"]
    consumer = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="reader")["Consumer"]
    assert consumer["ConsumerARN"].startswith(arn + "/consumer/reader:")
    assert code_of(kinesis.register_stream_consumer, StreamARN=arn, ConsumerName="reader") == "ResourceInUseException"
    described = kinesis.describe_stream_consumer(ConsumerARN=consumer["ConsumerARN"])["ConsumerDescription"]
    assert (described["ConsumerName"], described["ConsumerStatus"], described["StreamARN"]) == ("reader", "ACTIVE", arn)
    kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="second")
    listed = kinesis.list_stream_consumers(StreamARN=arn, MaxResults=1)
    names = [c["ConsumerName"] for c in listed["Consumers"]]
    names += [c["ConsumerName"] for c in kinesis.list_stream_consumers(StreamARN=arn, NextToken=listed["NextToken"])["Consumers"]]
    assert names == ["reader", "second"]
    assert kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]["ConsumerCount"] == 2
    assert code_of(kinesis.delete_stream, StreamName=stream_name) == "ResourceInUseException"
    kinesis.deregister_stream_consumer(StreamARN=arn, ConsumerName="second")
    assert code_of(kinesis.describe_stream_consumer, StreamARN=arn, ConsumerName="second") == "ResourceNotFoundException"
    kinesis.delete_stream(StreamName=stream_name, EnforceConsumerDeletion=True)


def test_limits_account_settings_and_policies(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=2)
    limits = kinesis.describe_limits()
    assert limits["ShardLimit"] >= limits["OpenShardCount"] >= 2
    assert kinesis.describe_account_settings()["MinimumThroughputBillingCommitment"]["Status"] in ("DISABLED", "ENABLED")
    updated = kinesis.update_account_settings(MinimumThroughputBillingCommitment={"Status": "ENABLED"})
    assert updated["MinimumThroughputBillingCommitment"]["Status"] == "ENABLED"
    assert kinesis.describe_account_settings()["MinimumThroughputBillingCommitment"]["Status"] == "ENABLED"
    kinesis.update_account_settings(MinimumThroughputBillingCommitment={"Status": "DISABLED"})
    arn = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]["StreamARN"]
    policy = json.dumps({"Version": "2012-10-17", "Statement": []})
    kinesis.put_resource_policy(ResourceARN=arn, Policy=policy)
    assert json.loads(kinesis.get_resource_policy(ResourceARN=arn)["Policy"]) == json.loads(policy)
    kinesis.delete_resource_policy(ResourceARN=arn)
    assert kinesis.get_resource_policy(ResourceARN=arn)["Policy"] == "{}"
    missing = arn.replace(stream_name, "no-such-stream")
    assert code_of(kinesis.put_resource_policy, ResourceARN=missing, Policy=policy) == "ResourceNotFoundException"

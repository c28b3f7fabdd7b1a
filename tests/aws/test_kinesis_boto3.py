"""boto3 and the aws CLI against Shoal's Kinesis API, unchanged but for the endpoint."""

import datetime
import json
import os
import subprocess
import urllib.request

import pytest
from botocore.exceptions import ClientError


def error_of(call, **kwargs):
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return info.value.response["Error"]["Code"], info.value.response["ResponseMetadata"]["HTTPStatusCode"]


def read_all(kinesis, stream, shard_id, iterator_type="TRIM_HORIZON", **kwargs):
    iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id, ShardIteratorType=iterator_type, **kwargs)[
        "ShardIterator"
    ]
    records = []
    while True:
        page = kinesis.get_records(ShardIterator=iterator, Limit=1000)
        records.extend(page["Records"])
        if not page["Records"] and page["MillisBehindLatest"] == 0:
            return records
        iterator = page["NextShardIterator"]


def test_create_then_write_at_once_like_emulator_suites(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=2)
    # No waiter: test suites write right after creating.
    put = kinesis.put_record(StreamName=stream_name, Data=b"first", PartitionKey="k")
    assert put["ShardId"].startswith("shardId-")
    assert len(put["SequenceNumber"]) == 56
    kinesis.get_waiter("stream_exists").wait(StreamName=stream_name, WaiterConfig={"Delay": 1})
    description = kinesis.describe_stream(StreamName=stream_name)["StreamDescription"]
    assert description["StreamStatus"] == "ACTIVE"
    assert description["StreamARN"] == f"arn:aws:kinesis:us-east-1:123456789012:stream/{stream_name}"
    assert [s["ShardId"] for s in description["Shards"]] == ["shardId-000000000000", "shardId-000000000001"]
    assert description["Shards"][1]["HashKeyRange"]["EndingHashKey"] == str(2**128 - 1)
    assert isinstance(description["StreamCreationTimestamp"], datetime.datetime)


def test_put_records_and_read_them_back_through_every_node(kinesis_nodes, stream_name):
    first, second, third = kinesis_nodes
    first.create_stream(StreamName=stream_name, ShardCount=3)
    records = [{"Data": f"record-{i}".encode(), "PartitionKey": f"key-{i}"} for i in range(300)]
    response = second.put_records(StreamName=stream_name, Records=records)
    assert response["FailedRecordCount"] == 0
    assert len(response["Records"]) == 300
    by_shard = {}
    for sent, result in zip(records, response["Records"]):
        by_shard.setdefault(result["ShardId"], []).append((result["SequenceNumber"], sent["Data"]))
    for shard in third.list_shards(StreamName=stream_name)["Shards"]:
        got = [(r["SequenceNumber"], r["Data"]) for r in read_all(third, stream_name, shard["ShardId"])]
        assert got == by_shard.get(shard["ShardId"], [])


def test_shard_iterator_types(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=1)
    seqs = [kinesis.put_record(StreamName=stream_name, Data=f"e{i}".encode(), PartitionKey="k")["SequenceNumber"] for i in range(6)]
    shard = "shardId-000000000000"
    data = lambda records: [r["Data"].decode() for r in records]
    assert data(read_all(kinesis, stream_name, shard)) == [f"e{i}" for i in range(6)]
    at = read_all(kinesis, stream_name, shard, "AT_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[2])
    assert data(at)[0] == "e2"
    after = read_all(kinesis, stream_name, shard, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=seqs[2])
    assert data(after)[0] == "e3"
    arrival = read_all(kinesis, stream_name, shard)[3]["ApproximateArrivalTimestamp"]
    assert isinstance(arrival, datetime.datetime)
    from_time = read_all(kinesis, stream_name, shard, "AT_TIMESTAMP", Timestamp=arrival)
    assert "e3" in data(from_time)
    latest = kinesis.get_shard_iterator(StreamName=stream_name, ShardId=shard, ShardIteratorType="LATEST")["ShardIterator"]
    kinesis.put_record(StreamName=stream_name, Data=b"new", PartitionKey="k")
    assert data(kinesis.get_records(ShardIterator=latest)["Records"]) == ["new"]


def test_errors_have_the_kinesis_types(kinesis, stream_name):
    assert error_of(kinesis.describe_stream, StreamName="does-not-exist") == ("ResourceNotFoundException", 400)
    assert error_of(kinesis.put_record, StreamName="does-not-exist", Data=b"x", PartitionKey="k") == ("ResourceNotFoundException", 400)
    kinesis.create_stream(StreamName=stream_name, ShardCount=1)
    assert error_of(kinesis.create_stream, StreamName=stream_name, ShardCount=1) == ("ResourceInUseException", 400)
    assert error_of(kinesis.get_records, ShardIterator="not-an-iterator") == ("InvalidArgumentException", 400)
    code, _ = error_of(kinesis.put_record, StreamName=stream_name, Data=b"x" * (1024 * 1024), PartitionKey="k")
    assert code == "ValidationException"
    assert error_of(
        kinesis.put_record, StreamName=stream_name, Data=b"x", PartitionKey="k", ExplicitHashKey=str(2**128)
    ) == ("InvalidArgumentException", 400)
    assert error_of(
        kinesis.get_shard_iterator, StreamName=stream_name, ShardId="shardId-000000000007", ShardIteratorType="LATEST"
    ) == ("ResourceNotFoundException", 400)


def raw_call(endpoint, target, body, content_type="application/x-amz-json-1.1"):
    request = urllib.request.Request(
        endpoint + "/", data=body, method="POST", headers={"X-Amz-Target": target, "Content-Type": content_type}
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_malformed_calls_get_protocol_errors(shoal_dev):
    endpoint = shoal_dev["endpoints"][1]
    status, body = raw_call(endpoint, "Kinesis_20131202.NoSuchOperation", b"{}")
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    status, body = raw_call(endpoint, "Kinesis_20131202.ListStreams", b"{not json")
    assert (status, body["__type"]) == (400, "SerializationException")
    status, body = raw_call(endpoint, "Kinesis_20131202.PutRecord", b'{"StreamName": 5}')
    assert (status, body["__type"]) == (400, "SerializationException")
    status, body = raw_call(endpoint, "Kinesis_20131202.ListStreams", b"")
    assert status == 200 and "StreamNames" in body


def test_paging_with_next_token(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=5)
    page = kinesis.list_shards(StreamName=stream_name, MaxResults=2)
    shards = page["Shards"]
    while "NextToken" in page:
        page = kinesis.list_shards(NextToken=page["NextToken"], MaxResults=2)
        shards.extend(page["Shards"])
    assert [s["ShardId"] for s in shards] == [f"shardId-{i:012d}" for i in range(5)]
    names = []
    page = kinesis.list_streams(Limit=1)
    names.extend(page["StreamNames"])
    while page["HasMoreStreams"]:
        page = kinesis.list_streams(Limit=1, NextToken=page["NextToken"])
        names.extend(page["StreamNames"])
    assert stream_name in names and names == sorted(names)


def test_stream_arn_works_where_the_model_accepts_it(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=1)
    arn = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]["StreamARN"]
    kinesis.put_record(StreamARN=arn, Data=b"via-arn", PartitionKey="k")
    shards = kinesis.list_shards(StreamARN=arn)["Shards"]
    assert [r["Data"] for r in read_all(kinesis, stream_name, shards[0]["ShardId"])] == [b"via-arn"]
    kinesis.delete_stream(StreamARN=arn)


def test_region_from_the_credential_scope_shapes_arns(shoal_dev, stream_name):
    from conftest import make_client

    eu = make_client(shoal_dev["endpoints"][0], region="eu-west-1")
    eu.create_stream(StreamName=stream_name, ShardCount=1)
    arn = eu.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]["StreamARN"]
    assert arn.startswith("arn:aws:kinesis:eu-west-1:123456789012:stream/")


def test_the_aws_cli_works_unchanged(shoal_dev, stream_name):
    env = dict(os.environ, AWS_ACCESS_KEY_ID="AKIDSHOALTEST", AWS_SECRET_ACCESS_KEY="secret", AWS_DEFAULT_REGION="us-east-1")
    endpoint = shoal_dev["endpoints"][2]

    def aws(*args):
        out = subprocess.run(["aws", "--endpoint-url", endpoint, "kinesis", *args], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout) if out.stdout.strip() else {}

    aws("create-stream", "--stream-name", stream_name, "--shard-count", "1")
    put = aws("put-record", "--stream-name", stream_name, "--partition-key", "k", "--data", "aGVsbG8=")
    assert put["ShardId"] == "shardId-000000000000"
    iterator = aws("get-shard-iterator", "--stream-name", stream_name, "--shard-id", "shardId-000000000000", "--shard-iterator-type", "TRIM_HORIZON")[
        "ShardIterator"
    ]
    records = aws("get-records", "--shard-iterator", iterator)["Records"]
    assert [r["SequenceNumber"] for r in records] == [put["SequenceNumber"]]
    assert stream_name in aws("list-streams")["StreamNames"]
    aws("delete-stream", "--stream-name", stream_name)


def test_streams_are_per_account_and_region(shoal_dev):
    from conftest import make_client

    endpoint = shoal_dev["endpoints"][0]
    us = make_client(endpoint, region="us-east-1")
    eu = make_client(endpoint, region="eu-west-1")
    other_account = make_client(endpoint, region="us-east-1", key=("210987654321", "secret"))
    name = "scoped-stream"
    for client, shards in ((us, 1), (eu, 2), (other_account, 3)):
        client.create_stream(StreamName=name, ShardCount=shards)
    counts = [len(c.list_shards(StreamName=name)["Shards"]) for c in (us, eu, other_account)]
    assert counts == [1, 2, 3], "three streams of one name, one per account and region"
    eu.put_record(StreamName=name, Data=b"in-eu", PartitionKey="k")
    summary = eu.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
    assert summary["StreamName"] == name
    assert summary["StreamARN"] == f"arn:aws:kinesis:eu-west-1:123456789012:stream/{name}"
    assert other_account.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"].startswith(
        "arn:aws:kinesis:us-east-1:210987654321:stream/"
    )
    assert name in eu.list_streams()["StreamNames"]
    assert all("/" not in n and ":" not in n for n in eu.list_streams()["StreamNames"])
    it = eu.get_shard_iterator(StreamName=name, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    eu_records = eu.get_records(ShardIterator=it)["Records"]
    it = us.get_shard_iterator(StreamName=name, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    assert us.get_records(ShardIterator=it)["Records"] == [] and [r["Data"] for r in eu_records] in ([b"in-eu"], [])
    page = eu.list_shards(StreamName=name, MaxResults=1)
    assert eu.list_shards(NextToken=page["NextToken"], MaxResults=1)["Shards"][0]["ShardId"] == "shardId-000000000001"
    for client in (us, eu, other_account):
        client.delete_stream(StreamName=name)

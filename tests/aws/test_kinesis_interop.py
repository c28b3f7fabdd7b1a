"""ShardFilter, ordering, stream mode, warm throughput, iterator expiry, batch limits,
KPL aggregation, and records crossing between the gRPC API and the AWS API."""

import base64
import os
import subprocess
import time

import pytest
from aws_kinesis_agg.aggregator import RecordAggregator
from aws_kinesis_agg.deaggregator import iter_deaggregate_records

from conftest import SHOAL, code_of, make_client


def test_list_shards_filters(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=3)
    ids = lambda **kw: [s["ShardId"] for s in kinesis.list_shards(StreamName=stream_name, **kw)["Shards"]]
    assert ids(ShardFilter={"Type": "AT_LATEST"}) == [f"shardId-{i:012d}" for i in range(3)]
    assert ids(ShardFilter={"Type": "FROM_TRIM_HORIZON"}) == [f"shardId-{i:012d}" for i in range(3)]
    assert ids(ShardFilter={"Type": "AFTER_SHARD_ID", "ShardId": "shardId-000000000000"}) == ["shardId-000000000001", "shardId-000000000002"]
    assert code_of(kinesis.list_shards, StreamName=stream_name, ShardFilter={"Type": "AFTER_SHARD_ID"}) == "InvalidArgumentException"


def test_sequence_number_for_ordering(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=1)
    first = kinesis.put_record(StreamName=stream_name, Data=b"a", PartitionKey="k")["SequenceNumber"]
    second = kinesis.put_record(StreamName=stream_name, Data=b"b", PartitionKey="k", SequenceNumberForOrdering=first)["SequenceNumber"]
    assert int(second) > int(first)
    assert code_of(kinesis.put_record, StreamName=stream_name, Data=b"c", PartitionKey="k", SequenceNumberForOrdering="12") == "InvalidArgumentException"


def test_stream_mode_and_warm_throughput_are_stored_and_reported(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    summary = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]
    assert summary["StreamModeDetails"]["StreamMode"] == "ON_DEMAND" and summary["OpenShardCount"] == 4
    kinesis.update_stream_mode(StreamARN=summary["StreamARN"], StreamModeDetails={"StreamMode": "PROVISIONED"})
    warm = kinesis.update_stream_warm_throughput(StreamName=stream_name, WarmThroughputMiBps=100)
    assert warm["WarmThroughput"]["TargetMiBps"] == 100
    summary = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]
    assert summary["StreamModeDetails"]["StreamMode"] == "PROVISIONED"
    assert summary["WarmThroughput"]["TargetMiBps"] == 100


def test_expired_and_malformed_iterators(short_iterator_dev, stream_name):
    kinesis = make_client(short_iterator_dev["endpoints"][0])
    kinesis.create_stream(StreamName=stream_name, ShardCount=1)
    iterator = kinesis.get_shard_iterator(StreamName=stream_name, ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]
    kinesis.get_records(ShardIterator=iterator)
    time.sleep(1.5)
    assert code_of(kinesis.get_records, ShardIterator=iterator) == "ExpiredIteratorException"
    assert code_of(kinesis.get_records, ShardIterator=iterator[:-4] + "AAAA") == "InvalidArgumentException"


def test_batch_limits(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=1)
    too_many = [{"Data": b"x", "PartitionKey": "k"} for _ in range(501)]
    assert code_of(kinesis.put_records, StreamName=stream_name, Records=too_many) == "ValidationException"
    too_big = [{"Data": b"x" * (1024 * 1024 - 10), "PartitionKey": "k"} for _ in range(6)]
    assert code_of(kinesis.put_records, StreamName=stream_name, Records=too_big) == "InvalidArgumentException"
    shard = kinesis.list_shards(StreamName=stream_name)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName=stream_name, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    assert kinesis.get_records(ShardIterator=iterator)["Records"] == [], "refused batches wrote nothing"


def test_kpl_aggregated_records_round_trip_byte_for_byte(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=2)
    aggregator = RecordAggregator()
    for i in range(50):
        aggregator.add_user_record(f"user-{i}", f"payload-{i}".encode())
    key, explicit_hash_key, blob = aggregator.clear_and_get().get_contents()
    extra = {"ExplicitHashKey": explicit_hash_key} if explicit_hash_key else {}
    put = kinesis.put_record(StreamName=stream_name, Data=blob, PartitionKey=key, **extra)
    iterator = kinesis.get_shard_iterator(StreamName=stream_name, ShardId=put["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    stored = kinesis.get_records(ShardIterator=iterator)["Records"]
    assert len(stored) == 1 and stored[0]["Data"] == blob
    users = list(iter_deaggregate_records(stored, data_format="Boto3"))
    data = [u.get("Data", u.get("kinesis", {}).get("data")) for u in users]
    assert [base64.b64decode(d) for d in data] == [f"payload-{i}".encode() for i in range(50)]


def test_records_cross_between_the_grpc_and_aws_apis(shoal_dev, kinesis, stream_name):
    env = dict(os.environ, SHOAL_ENDPOINT=shoal_dev["grpc"])
    run = lambda *args, **kw: subprocess.run([SHOAL, *args], env=env, capture_output=True, text=True, **kw)
    created = run("stream", "create", stream_name, "--shards", "2")
    assert created.returncode == 0, created.stderr
    assert run("put", stream_name, "--key-separator", ",", input="a,from-grpc-1\nb,from-grpc-2\n").returncode == 0
    kinesis.put_records(StreamName=stream_name, Records=[{"Data": b"from-aws", "PartitionKey": "c"}])
    seen = []
    for shard in kinesis.list_shards(StreamName=stream_name)["Shards"]:
        it = kinesis.get_shard_iterator(StreamName=stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        seen += [r["Data"] for r in kinesis.get_records(ShardIterator=it)["Records"]]
    assert sorted(seen) == [b"from-aws", b"from-grpc-1", b"from-grpc-2"]
    got = run("get", stream_name)
    assert sorted(got.stdout.split()) == ["from-aws", "from-grpc-1", "from-grpc-2"]


def test_shoal_aggregates_what_the_kpl_tools_read_and_reads_what_they_write(shoal_dev, kinesis, stream_name):
    """`shoal put --aggregate` (the Rust producer) writes KPL aggregates that
    aws-kinesis-agg unpacks; aggregates made by aws-kinesis-agg are unpacked by
    `shoal consumer run`."""
    env = dict(os.environ, SHOAL_ENDPOINT=shoal_dev["grpc"])
    run = lambda *args, **kw: subprocess.run([SHOAL, *args], env=env, capture_output=True, text=True, **kw)
    assert run("stream", "create", stream_name, "--shards", "2").returncode == 0
    lines = "".join(f"key-{i % 7},value-{i}\n" for i in range(300))
    put = run("put", stream_name, "--aggregate", "--key-separator", ",", input=lines)
    assert put.returncode == 0, put.stderr
    stored, users = [], []
    for shard in kinesis.list_shards(StreamName=stream_name)["Shards"]:
        it = kinesis.get_shard_iterator(StreamName=stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        records = kinesis.get_records(ShardIterator=it)["Records"]
        stored += records
        unpacked = [u["kinesis"] for u in iter_deaggregate_records(records, data_format="Boto3")]
        users += [(u["partitionKey"], base64.b64decode(u["data"]).decode()) for u in unpacked]
    assert len(stored) < 300, "records travelled in aggregates"
    assert sorted(users) == sorted((f"key-{i % 7}", f"value-{i}") for i in range(300))
    for key in {k for k, _ in users}:
        mine = [int(v.split("-")[1]) for k, v in users if k == key]
        assert mine == sorted(mine), f"{key} kept its order"

    # The other way: an aggregate made by aws-kinesis-agg, read by a Shoal consumer.
    aggregator = RecordAggregator()
    for i in range(5):
        aggregator.add_user_record("same-key", f"kpl-{i}".encode())
    key, explicit_hash_key, blob = aggregator.clear_and_get().get_contents()
    kinesis.put_record(StreamName=stream_name, Data=blob, PartitionKey=key)
    member = subprocess.Popen(
        [SHOAL, "consumer", "run", stream_name, "--application", "agg-reader"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        seen = []
        while len(seen) < 305:
            line = member.stdout.readline()
            assert line, "the consumer stopped early"
            seen.append(line.strip())
    finally:
        member.terminate()
        member.wait(timeout=10)
    assert [s for s in seen if s.startswith("kpl-")] == [f"kpl-{i}" for i in range(5)]

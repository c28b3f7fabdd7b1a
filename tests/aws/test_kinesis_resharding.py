"""SplitShard, MergeShards and UpdateShardCount through boto3: parents close, children open, readers follow."""

import pytest
from conftest import code_of

MIDDLE = str(2**127)


def drain(kinesis, stream, shard_id):
    """Reads a closed shard to its end; returns its records and ChildShards."""
    iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = []
    for _ in range(100):
        page = kinesis.get_records(ShardIterator=iterator)
        records += page["Records"]
        if "NextShardIterator" not in page or page["NextShardIterator"] is None:
            return records, page.get("ChildShards", [])
        iterator = page["NextShardIterator"]
    raise AssertionError("closed shard never ended")


def test_split_then_merge(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=1)
    before = [kinesis.put_record(StreamName=stream_name, Data=f"b{i}".encode(), PartitionKey=f"k{i}")["SequenceNumber"] for i in range(5)]
    kinesis.split_shard(StreamName=stream_name, ShardToSplit="shardId-000000000000", NewStartingHashKey=MIDDLE)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream_name, WaiterConfig={"Delay": 1})
    shards = kinesis.list_shards(StreamName=stream_name)["Shards"]
    assert [s["ShardId"] for s in shards] == ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002"]
    assert "EndingSequenceNumber" in shards[0]["SequenceNumberRange"]
    assert shards[0]["SequenceNumberRange"]["EndingSequenceNumber"] > before[-1]
    assert shards[1]["ParentShardId"] == "shardId-000000000000"
    open_ids = [s["ShardId"] for s in kinesis.list_shards(StreamName=stream_name, ShardFilter={"Type": "AT_LATEST"})["Shards"]]
    assert open_ids == ["shardId-000000000001", "shardId-000000000002"]

    records, children = drain(kinesis, stream_name, "shardId-000000000000")
    assert [r["SequenceNumber"] for r in records] == before
    assert [c["ShardId"] for c in children] == ["shardId-000000000001", "shardId-000000000002"]
    assert children[0]["ParentShards"] == ["shardId-000000000000"]

    after = kinesis.put_records(StreamName=stream_name, Records=[{"Data": b"a", "PartitionKey": f"k{i}"} for i in range(20)])
    assert after["FailedRecordCount"] == 0
    assert {r["ShardId"] for r in after["Records"]} <= {"shardId-000000000001", "shardId-000000000002"}

    assert code_of(
        kinesis.split_shard, StreamName=stream_name, ShardToSplit="shardId-000000000000", NewStartingHashKey=MIDDLE
    ) == "InvalidArgumentException", "a closed shard cannot be split again"
    kinesis.merge_shards(StreamName=stream_name, ShardToMerge="shardId-000000000001", AdjacentShardToMerge="shardId-000000000002")
    kinesis.get_waiter("stream_exists").wait(StreamName=stream_name, WaiterConfig={"Delay": 1})
    merged = kinesis.list_shards(StreamName=stream_name, ShardFilter={"Type": "AT_LATEST"})["Shards"]
    assert [(s["ShardId"], s["ParentShardId"], s["AdjacentParentShardId"]) for s in merged] == [
        ("shardId-000000000003", "shardId-000000000001", "shardId-000000000002")
    ]
    assert merged[0]["HashKeyRange"] == {"StartingHashKey": "0", "EndingHashKey": str(2**128 - 1)}


def test_subscription_ends_at_a_closed_shard_with_its_children(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=1)
    arn = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]["StreamARN"]
    consumer = kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="follower")["Consumer"]["ConsumerARN"]
    kinesis.put_record(StreamName=stream_name, Data=b"last-before-split", PartitionKey="k")
    kinesis.split_shard(StreamName=stream_name, ShardToSplit="shardId-000000000000", NewStartingHashKey=MIDDLE)
    response = kinesis.subscribe_to_shard(ConsumerARN=consumer, ShardId="shardId-000000000000", StartingPosition={"Type": "TRIM_HORIZON"})
    data, children = [], []
    for event in response["EventStream"]:
        body = event["SubscribeToShardEvent"]
        data += [r["Data"] for r in body["Records"]]
        children = body.get("ChildShards", [])
        if children:
            break
    response["EventStream"].close()
    assert data == [b"last-before-split"]
    assert [c["ShardId"] for c in children] == ["shardId-000000000001", "shardId-000000000002"]


def test_update_shard_count_scales_uniformly(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=2)
    response = kinesis.update_shard_count(StreamName=stream_name, TargetShardCount=4, ScalingType="UNIFORM_SCALING")
    assert (response["CurrentShardCount"], response["TargetShardCount"]) == (2, 4)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream_name, WaiterConfig={"Delay": 1})
    shards = kinesis.list_shards(StreamName=stream_name)["Shards"]
    open_shards = [s for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]]
    assert (len(shards), len(open_shards)) == (6, 4), "two parents closed, four children open"
    widths = sorted(int(s["HashKeyRange"]["EndingHashKey"]) - int(s["HashKeyRange"]["StartingHashKey"]) for s in open_shards)
    assert widths[-1] - widths[0] <= 4, "uniform ranges"
    kinesis.update_shard_count(StreamName=stream_name, TargetShardCount=2, ScalingType="UNIFORM_SCALING")
    kinesis.get_waiter("stream_exists").wait(StreamName=stream_name, WaiterConfig={"Delay": 1})
    assert len(kinesis.list_shards(StreamName=stream_name, ShardFilter={"Type": "AT_LATEST"})["Shards"]) == 2
    assert code_of(kinesis.update_shard_count, StreamName=stream_name, TargetShardCount=5, ScalingType="UNIFORM_SCALING") == "InvalidArgumentException"
    put = kinesis.put_records(StreamName=stream_name, Records=[{"Data": b"x", "PartitionKey": f"k{i}"} for i in range(20)])
    assert put["FailedRecordCount"] == 0


@pytest.mark.parametrize("initial,target,total", [(2, 4, 6), (4, 5, 15), (10, 13, 37), (4, 2, 6), (5, 3, 7)])
def test_update_shard_count_leaves_the_shards_aws_leaves(kinesis, stream_name, initial, target, total):
    """The totals AWS produces (closed shards included), as recorded in moto's AWS-verified vectors."""
    kinesis.create_stream(StreamName=stream_name, ShardCount=initial)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream_name, WaiterConfig={"Delay": 1})
    kinesis.update_shard_count(StreamName=stream_name, TargetShardCount=target, ScalingType="UNIFORM_SCALING")
    kinesis.get_waiter("stream_exists").wait(StreamName=stream_name, WaiterConfig={"Delay": 1})
    shards = kinesis.list_shards(StreamName=stream_name)["Shards"]
    open_shards = [s for s in shards if "EndingSequenceNumber" not in s["SequenceNumberRange"]]
    assert (len(shards), len(open_shards)) == (total, target)
    # The open shards still cover the whole hash key space, without gaps or overlaps.
    ranges = sorted((int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"])) for s in open_shards)
    assert ranges[0][0] == 0 and ranges[-1][1] == 2**128 - 1
    assert all(ranges[i][1] + 1 == ranges[i + 1][0] for i in range(len(ranges) - 1))
    summary = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == target


def test_update_shard_count_refuses_more_than_half_down(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=10)
    assert code_of(kinesis.update_shard_count, StreamName=stream_name, TargetShardCount=3, ScalingType="UNIFORM_SCALING") == "InvalidArgumentException"


def test_on_demand_streams_refuse_manual_resharding(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
    assert code_of(kinesis.update_shard_count, StreamName=stream_name, TargetShardCount=8, ScalingType="UNIFORM_SCALING") == "ValidationException"
    assert code_of(
        kinesis.split_shard, StreamName=stream_name, ShardToSplit="shardId-000000000000", NewStartingHashKey=str(2**125)
    ) == "ValidationException"

"""SubscribeToShard event streams, CBOR (as the Java SDKs speak it) and SigV4 verification."""

import time
import uuid

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import cbor2
import pytest
import urllib.request
from botocore.exceptions import ClientError

from conftest import SECURED_KEY, make_client


def consumer_for(kinesis, stream_name, shards=1):
    kinesis.create_stream(StreamName=stream_name, ShardCount=shards)
    arn = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]["StreamARN"]
    return kinesis.register_stream_consumer(StreamARN=arn, ConsumerName="efo")["Consumer"]["ConsumerARN"]


def collect(event_stream, want, timeout=20):
    records, continuation, deadline = [], None, time.time() + timeout
    for event in event_stream:
        body = event["SubscribeToShardEvent"]
        records.extend(body["Records"])
        continuation = body["ContinuationSequenceNumber"]
        assert body["MillisBehindLatest"] >= 0
        if len(records) >= want or time.time() > deadline:
            break
    return records, continuation


def test_subscribe_to_shard_pushes_records(kinesis, stream_name):
    consumer = consumer_for(kinesis, stream_name)
    seqs = [kinesis.put_record(StreamName=stream_name, Data=f"r{i}".encode(), PartitionKey="k")["SequenceNumber"] for i in range(3)]
    response = kinesis.subscribe_to_shard(ConsumerARN=consumer, ShardId="shardId-000000000000", StartingPosition={"Type": "TRIM_HORIZON"})
    records, continuation = collect(response["EventStream"], 3)
    response["EventStream"].close()
    assert [r["Data"] for r in records] == [b"r0", b"r1", b"r2"]
    assert continuation == seqs[-1]

    # A second subscription within five seconds is refused; later it takes over.
    with pytest.raises(ClientError) as refused:
        kinesis.subscribe_to_shard(ConsumerARN=consumer, ShardId="shardId-000000000000", StartingPosition={"Type": "LATEST"})
    assert refused.value.response["Error"]["Code"] == "ResourceInUseException"
    time.sleep(5.2)
    response = kinesis.subscribe_to_shard(
        ConsumerARN=consumer, ShardId="shardId-000000000000", StartingPosition={"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": seqs[0]}
    )
    records, _ = collect(response["EventStream"], 2)
    response["EventStream"].close()
    assert [r["Data"] for r in records] == [b"r1", b"r2"]


def test_subscribe_from_latest_sees_new_records(kinesis_nodes, stream_name):
    first, second, _ = kinesis_nodes
    consumer = consumer_for(first, stream_name)
    response = second.subscribe_to_shard(ConsumerARN=consumer, ShardId="shardId-000000000000", StartingPosition={"Type": "LATEST"})
    stream = response["EventStream"]
    first.put_record(StreamName=stream_name, Data=b"live", PartitionKey="k")
    records, _ = collect(stream, 1)
    stream.close()
    assert [r["Data"] for r in records] == [b"live"]


def test_subscribe_with_an_unknown_consumer_is_not_found(kinesis, stream_name):
    kinesis.create_stream(StreamName=stream_name, ShardCount=1)
    arn = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]["StreamARN"]
    with pytest.raises(ClientError) as missing:
        kinesis.subscribe_to_shard(ConsumerARN=f"{arn}/consumer/ghost:1", ShardId="shardId-000000000000", StartingPosition={"Type": "LATEST"})
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"


def signed_call(endpoint, operation, body, content_type, key=("AKIDSHOALTEST", "secret"), sign=True):
    request = botocore.awsrequest.AWSRequest(
        method="POST",
        url=endpoint + "/",
        data=body,
        headers={"X-Amz-Target": f"Kinesis_20131202.{operation}", "Content-Type": content_type},
    )
    if sign:
        botocore.auth.SigV4Auth(botocore.credentials.Credentials(*key), "kinesis", "us-east-1").add_auth(request)
    prepared = urllib.request.Request(endpoint + "/", data=body, method="POST", headers=dict(request.headers.items()))
    try:
        with urllib.request.urlopen(prepared) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


def test_cbor_requests_get_cbor_answers_with_aws_quirks(shoal_dev, kinesis, stream_name):
    endpoint = shoal_dev["endpoints"][0]
    cbor = "application/x-amz-cbor-1.1"
    status, ctype, _ = signed_call(endpoint, "CreateStream", cbor2.dumps({"StreamName": stream_name, "ShardCount": 1}), cbor)
    assert status == 200 and ctype == cbor
    before_ms = int(time.time() * 1000)
    status, _, body = signed_call(
        endpoint, "PutRecord", cbor2.dumps({"StreamName": stream_name, "Data": b"\x00binary\xff", "PartitionKey": "k"}), cbor
    )
    assert status == 200
    put = cbor2.loads(body)
    assert put["ShardId"] == "shardId-000000000000"
    # Timestamps in requests are tag 1 holding epoch milliseconds.
    at = cbor2.CBORTag(1, before_ms - 1000)
    request = {"StreamName": stream_name, "ShardId": "shardId-000000000000", "ShardIteratorType": "AT_TIMESTAMP", "Timestamp": at}
    status, _, body = signed_call(endpoint, "GetShardIterator", cbor2.dumps(request), cbor)
    assert status == 200
    iterator = cbor2.loads(body)["ShardIterator"]
    status, _, body = signed_call(endpoint, "GetRecords", cbor2.dumps({"ShardIterator": iterator}), cbor)
    # The arrival time is tag 1 (0xc1) holding a 64-bit integer of epoch milliseconds,
    # which a strict CBOR decoder would read as seconds: find it in the raw bytes.
    key = cbor2.dumps("ApproximateArrivalTimestamp")
    at = body.index(key) + len(key)
    assert body[at : at + 2] == b"\xc1\x1b", body[at : at + 10]
    millis = int.from_bytes(body[at + 2 : at + 10], "big")
    assert abs(millis - before_ms) < 60_000, "arrival time is epoch milliseconds"
    records = cbor2.loads(body[:at] + body[at + 1 :])["Records"]
    assert records[0]["Data"] == b"\x00binary\xff", "blobs are CBOR byte strings"
    status, ctype, body = signed_call(endpoint, "DescribeStream", cbor2.dumps({"StreamName": "nope-" + stream_name}), cbor)
    assert status == 400 and ctype == cbor and cbor2.loads(body)["__type"] == "ResourceNotFoundException"


def test_signatures_are_verified_when_credentials_are_configured(secured_dev):
    endpoint = secured_dev["endpoints"][0]
    trusted = make_client(endpoint, key=SECURED_KEY)
    name = "secure-" + uuid.uuid4().hex[:8]
    trusted.create_stream(StreamName=name, ShardCount=1)
    assert name in trusted.list_streams()["StreamNames"]

    def code(client):
        with pytest.raises(ClientError) as info:
            client.list_streams()
        return info.value.response["Error"]["Code"]

    assert code(make_client(endpoint, key=(SECURED_KEY[0], "wrong-secret"))) == "InvalidSignatureException"
    assert code(make_client(endpoint, key=("AKIDSTRANGER", "whatever"))) == "UnrecognizedClientException"
    status, _, body = signed_call(endpoint, "ListStreams", b"{}", "application/x-amz-json-1.1", sign=False)
    assert status in (400, 403) and b"MissingAuthenticationTokenException" in body


def test_http2_cleartext_is_served(shoal_dev, stream_name):
    """The model declares h2 for SubscribeToShard; clients with prior knowledge get HTTP/2."""
    import json
    import subprocess

    endpoint = shoal_dev["endpoints"][0]
    out = subprocess.run(
        [
            "curl", "-s", "--http2-prior-knowledge", "-o", "-", "-w", "\\n%{http_version}",
            "-H", "X-Amz-Target: Kinesis_20131202.ListStreams",
            "-H", "Content-Type: application/x-amz-json-1.1",
            "-d", "{}", endpoint + "/",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    body, version = out.stdout.rsplit("\n", 1)
    assert version == "2"
    assert "StreamNames" in json.loads(body)

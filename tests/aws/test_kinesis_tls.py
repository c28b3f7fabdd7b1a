"""The AWS API and the gRPC API over TLS: boto3, the aws CLI and the shoal CLI
trust the cluster's CA; plain connections get nowhere."""

import base64
import json
import os
import subprocess

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from conftest import SHOAL


def tls_client(endpoint, ca):
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDSHOALTLS",
        aws_secret_access_key="secret",
        verify=ca,
        config=Config(retries={"max_attempts": 1}),
    )


def test_boto3_over_https_writes_on_one_node_and_reads_on_another(tls_dev):
    first, second = (tls_client(e, tls_dev["ca"]) for e in tls_dev["endpoints"][:2])
    first.create_stream(StreamName="tls-boto3", ShardCount=2)
    first.get_waiter("stream_exists").wait(StreamName="tls-boto3", WaiterConfig={"Delay": 0.2})
    sent = [f"record-{i}".encode() for i in range(20)]
    result = first.put_records(StreamName="tls-boto3", Records=[{"Data": d, "PartitionKey": str(i)} for i, d in enumerate(sent)])
    assert result["FailedRecordCount"] == 0
    got = []
    for shard in second.list_shards(StreamName="tls-boto3")["Shards"]:
        iterator = second.get_shard_iterator(StreamName="tls-boto3", ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        got += [r["Data"] for r in second.get_records(ShardIterator=iterator)["Records"]]
    assert sorted(got) == sorted(sent)


def test_an_unknown_certificate_authority_is_not_trusted(tls_dev):
    # Without the cluster's CA the SDK cannot verify the server and refuses.
    untrusting = tls_client(tls_dev["endpoints"][0], True)
    with pytest.raises(botocore.exceptions.SSLError):
        untrusting.list_streams()


def test_plain_http_to_a_tls_port_fails(tls_dev):
    plain = tls_client(tls_dev["endpoints"][0].replace("https://", "http://"), tls_dev["ca"])
    with pytest.raises((botocore.exceptions.ConnectionClosedError, botocore.exceptions.EndpointConnectionError, botocore.exceptions.ClientError)):
        plain.list_streams()


def test_aws_cli_with_the_ca_bundle(tls_dev):
    env = dict(os.environ, AWS_ACCESS_KEY_ID="AKIDSHOALTLS", AWS_SECRET_ACCESS_KEY="secret", AWS_DEFAULT_REGION="us-east-1")
    base = ["aws", "--endpoint-url", tls_dev["endpoints"][2], "--ca-bundle", tls_dev["ca"], "kinesis"]
    subprocess.run(base + ["create-stream", "--stream-name", "tls-cli", "--shard-count", "1"], check=True, env=env)
    subprocess.run(base + ["wait", "stream-exists", "--stream-name", "tls-cli"], check=True, env=env)
    data = base64.b64encode(b"over tls").decode()
    put = subprocess.run(base + ["put-record", "--stream-name", "tls-cli", "--partition-key", "k", "--data", data], check=True, env=env, capture_output=True, text=True)
    assert json.loads(put.stdout)["ShardId"] == "shardId-000000000000"


def test_shoal_cli_needs_the_ca(tls_dev):
    trusted = subprocess.run([SHOAL, "--tls-ca", tls_dev["ca"], "--endpoint", tls_dev["grpc"], "stream", "list"], capture_output=True, text=True, timeout=30)
    assert trusted.returncode == 0, trusted.stderr
    untrusted = subprocess.run([SHOAL, "--endpoint", tls_dev["grpc"], "stream", "list"], capture_output=True, text=True, timeout=30, env={k: v for k, v in os.environ.items() if not k.startswith("SHOAL_TLS")})
    assert untrusted.returncode != 0

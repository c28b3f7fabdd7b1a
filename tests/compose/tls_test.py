#!/usr/bin/env python3
"""The TLS variant of the compose cluster (deploy/docker-compose.tls.yml).

Checks, against the three containers: the nodes formed a cluster over mutual
TLS (a stream's shards have leaders and replicate), the shoal CLI and boto3 work
over TLS with the cluster's CA, records written through one node are read
through another, and plain connections are refused.

    python tests/compose/tls_test.py --shoal target/debug/shoal --ca deploy/tls/ca.pem
"""

import argparse
import json
import subprocess
import sys
import time

import boto3
import botocore.exceptions
from botocore.config import Config

GRPC = ["127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053"]
AWS = ["https://127.0.0.1:4567", "https://127.0.0.1:4568", "https://127.0.0.1:4569"]
STREAM = "tls-smoke"


def kinesis(endpoint, verify):
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="tls",
        aws_secret_access_key="tls",
        verify=verify,
        config=Config(retries={"max_attempts": 2}, connect_timeout=3, read_timeout=10),
    )


def shoal(args, binary, ca=None):
    command = [binary] + (["--tls-ca", ca] if ca else []) + args
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shoal", required=True, help="the shoal binary (for CLI calls from the host)")
    parser.add_argument("--ca", required=True, help="the cluster's CA certificate (deploy/tls/ca.pem)")
    args = parser.parse_args()

    deadline = time.time() + 90
    while True:
        status = shoal(["--endpoint", GRPC[0], "cluster", "status"], args.shoal, args.ca)
        if status.returncode == 0:
            break
        if time.time() > deadline:
            sys.exit(f"cluster never answered over TLS: {status.stderr.strip()}")
        time.sleep(1)
    print("cluster answers over TLS", flush=True)

    created = shoal(["--endpoint", GRPC[1], "stream", "create", STREAM, "--shards", "2"], args.shoal, args.ca)
    if created.returncode != 0:
        sys.exit(f"stream create failed: {created.stderr.strip()}")
    writer, reader = kinesis(AWS[0], args.ca), kinesis(AWS[2], args.ca)
    writer.get_waiter("stream_exists").wait(StreamName=STREAM, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    sent = [f"secure-{i}".encode() for i in range(100)]
    for start in range(0, len(sent), 25):
        result = writer.put_records(
            StreamName=STREAM, Records=[{"Data": d, "PartitionKey": str(start + i)} for i, d in enumerate(sent[start:start + 25])]
        )
        if result["FailedRecordCount"]:
            sys.exit(f"put_records failed for {result['FailedRecordCount']} records")
    got = []
    for shard in reader.list_shards(StreamName=STREAM)["Shards"]:
        iterator = reader.get_shard_iterator(StreamName=STREAM, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        got += [r["Data"] for r in reader.get_records(ShardIterator=iterator, Limit=1000)["Records"]]
    if sorted(got) != sorted(sent):
        sys.exit(f"wrote {len(sent)} records through node 1, read {len(got)} through node 3")
    print(f"{len(sent)} records written through node 1 read back through node 3 over https", flush=True)

    # Both shards have a leader: their groups elect and replicate over mutual TLS.
    status = shoal(["--endpoint", GRPC[2], "cluster", "status"], args.shoal, args.ca)
    print(status.stdout, flush=True)
    rows = [line.split("\t") for line in status.stdout.splitlines()]
    led = [cells for cells in rows if len(cells) > 3 and cells[1] == STREAM and cells[3] not in ("", "0")]
    if len(led) != 2:
        sys.exit(f"expected both shards of {STREAM} to have a leader, status shows {len(led)}")

    plain = shoal(["--endpoint", GRPC[0], "stream", "list"], args.shoal)
    if plain.returncode == 0:
        sys.exit("a plain gRPC client was served by a TLS node")
    try:
        kinesis(AWS[0].replace("https", "http"), False).list_streams()
        sys.exit("a plain HTTP client was served by a TLS node")
    except (botocore.exceptions.ConnectionClosedError, botocore.exceptions.EndpointConnectionError, botocore.exceptions.ClientError):
        pass
    try:
        kinesis(AWS[0], True).list_streams()
        sys.exit("a client that does not trust the cluster's CA connected")
    except botocore.exceptions.SSLError:
        pass
    print(json.dumps({"tls": "ok", "records": len(sent), "read": len(got), "shards_led": len(led)}), flush=True)


if __name__ == "__main__":
    main()

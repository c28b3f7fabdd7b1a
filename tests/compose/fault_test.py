#!/usr/bin/env python3
"""Fault test against the docker-compose cluster (deploy/docker-compose.yml).

Producers write records with known keys and contents through the AWS API of all
three containers while a reader follows the shards; meanwhile the driver kills a
shard leader, cuts a node off the network, pauses one, and restarts all three in
turn. Afterwards every shard is read from the start and compared with what was
acknowledged: every acknowledged record must be there exactly once, at the
sequence number it was acknowledged with, and each key's records in order.
Unacknowledged writes may or may not appear, but never twice.

    python tests/compose/fault_test.py --project shoal-faults
"""

import argparse
import json
import random
import subprocess
import sys
import threading
import time

import boto3
from botocore.config import Config

STREAM = "faults"
SHARDS = 3
ENDPOINTS = ["http://127.0.0.1:4567", "http://127.0.0.1:4568", "http://127.0.0.1:4569"]
GRPC = ["127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053"]


def client(endpoint):
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="faults",
        aws_secret_access_key="faults",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=8),
    )


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def sh(*args, check=True):
    result = subprocess.run(list(args), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


class Cluster:
    def __init__(self, project, shoal):
        self.project = project
        self.shoal = shoal
        self.network = f"{project}_shoal"

    def container(self, node):
        return f"{self.project}_node-{node}_1"

    def wait_healthy(self, timeout=90):
        deadline = time.time() + timeout
        while time.time() < deadline:
            states = [sh("docker", "inspect", "-f", "{{.State.Health.Status}}", self.container(n), check=False).strip() for n in (1, 2, 3)]
            if all(s == "healthy" for s in states):
                return
            time.sleep(1)
        raise RuntimeError(f"cluster not healthy: {states}")

    def shard_leader(self, shard_id):
        for grpc in GRPC:
            out = subprocess.run([self.shoal, "--endpoint", grpc, "cluster", "status"], capture_output=True, text=True, timeout=20)
            for line in out.stdout.splitlines():
                cells = line.split("\t")
                if len(cells) > 3 and cells[1] == STREAM and cells[2] == shard_id and cells[3] != "0":
                    return int(cells[3])
        return None


class Producer(threading.Thread):
    """Sends batches of one record per key; the next record of a key only after
    the call carrying the previous one returned."""

    def __init__(self, index, acked, stop):
        super().__init__(daemon=True)
        self.index, self.acked, self.stop, self.calls, self.errors = index, acked, stop, 0, 0
        self.clients = [client(e) for e in ENDPOINTS]

    def run(self):
        n = 0
        while not self.stop.is_set():
            keys = [f"p{self.index}-k{k}" for k in range(8)]
            records = [{"PartitionKey": key, "Data": f"{key}:{n}".encode()} for key in keys]
            kinesis = random.choice(self.clients)
            try:
                response = kinesis.put_records(StreamName=STREAM, Records=records)
                for key, result in zip(keys, response["Records"]):
                    if "SequenceNumber" in result:
                        self.acked.append((key, n, result["ShardId"], result["SequenceNumber"]))
                self.calls += 1
            except Exception:
                self.errors += 1
                time.sleep(0.2)
            n += 1


class Reader(threading.Thread):
    """A consumer following every shard while the faults happen."""

    def __init__(self, stop):
        super().__init__(daemon=True)
        self.stop, self.read, self.errors = stop, 0, 0

    def run(self):
        iterators = {}
        while not self.stop.is_set():
            kinesis = client(random.choice(ENDPOINTS))
            try:
                for shard in [f"shardId-{i:012d}" for i in range(SHARDS)]:
                    if shard not in iterators:
                        iterators[shard] = kinesis.get_shard_iterator(StreamName=STREAM, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
                    page = kinesis.get_records(ShardIterator=iterators[shard], Limit=1000)
                    self.read += len(page["Records"])
                    iterators[shard] = page["NextShardIterator"]
            except Exception:
                self.errors += 1
                iterators.clear()
                time.sleep(0.3)
            time.sleep(0.1)


def read_everything():
    stored = {}
    for attempt in range(30):
        try:
            kinesis = client(ENDPOINTS[attempt % 3])
            stored = {}
            for shard in [f"shardId-{i:012d}" for i in range(SHARDS)]:
                records = []
                it = kinesis.get_shard_iterator(StreamName=STREAM, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
                while True:
                    page = kinesis.get_records(ShardIterator=it, Limit=10000)
                    records += page["Records"]
                    if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                        break
                    it = page["NextShardIterator"]
                stored[shard] = records
            return stored
        except Exception as error:
            log(f"final read failed ({error}); retrying")
            time.sleep(1)
    raise RuntimeError("could not read the stream back")


def audit(acked, stored):
    where = {}
    order = {}
    for shard, records in stored.items():
        for r in records:
            data = r["Data"].decode()
            where.setdefault(data, []).append((shard, r["SequenceNumber"]))
            key, n = data.rsplit(":", 1)
            order.setdefault(key, []).append(int(n))
    acked_set = {f"{key}:{n}" for key, n, _, _ in acked}
    lost = sum(1 for key, n, shard, seq in acked if (shard, seq) not in where.get(f"{key}:{n}", []))
    duplicated = sum(1 for places in where.values() if len(places) > 1)
    reordered = 0
    for key, ns in order.items():
        acked_ns = [n for n in ns if f"{key}:{n}" in acked_set]
        reordered += sum(1 for a, b in zip(acked_ns, acked_ns[1:]) if a >= b)
    read = sum(len(r) for r in stored.values())
    return {"acknowledged": len(acked), "read": read, "lost": lost, "duplicated": duplicated, "reordered": reordered}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", default="shoal-faults", help="docker-compose project name of the running cluster")
    parser.add_argument("--shoal", default="/var/tmp/shoal-target/debug/shoal", help="the shoal binary (for `cluster status`)")
    parser.add_argument("--settle", type=float, default=4.0, help="seconds of load between faults")
    args = parser.parse_args()
    cluster = Cluster(args.project, args.shoal)
    cluster.wait_healthy()
    admin = client(ENDPOINTS[0])
    for _ in range(30):
        try:
            admin.create_stream(StreamName=STREAM, ShardCount=SHARDS)
            break
        except admin.exceptions.ResourceInUseException:
            break
        except Exception as error:
            log(f"create_stream: {error}; retrying")
            time.sleep(1)
    admin.get_waiter("stream_exists").wait(StreamName=STREAM, WaiterConfig={"Delay": 1, "MaxAttempts": 60})

    stop = threading.Event()
    acked = []
    producers = [Producer(i, acked, stop) for i in range(3)]
    reader = Reader(stop)
    for thread in producers + [reader]:
        thread.start()
    started = time.time()
    time.sleep(args.settle)

    leader = cluster.shard_leader("shardId-000000000000") or 1
    log(f"docker kill node-{leader} (leader of shardId-000000000000)")
    sh("docker", "kill", cluster.container(leader))
    time.sleep(args.settle)
    sh("docker", "start", cluster.container(leader))
    cluster.wait_healthy()
    time.sleep(args.settle)

    cut = random.choice([1, 2, 3])
    log(f"docker network disconnect node-{cut}")
    sh("docker", "network", "disconnect", cluster.network, cluster.container(cut))
    time.sleep(args.settle)
    sh("docker", "network", "connect", "--alias", f"node-{cut}", cluster.network, cluster.container(cut))
    log(f"node-{cut} reconnected")
    time.sleep(args.settle)

    paused = random.choice([1, 2, 3])
    log(f"docker pause node-{paused}")
    sh("docker", "pause", cluster.container(paused))
    time.sleep(args.settle)
    sh("docker", "unpause", cluster.container(paused))
    time.sleep(args.settle)

    for node in (1, 2, 3):
        log(f"rolling restart: node-{node}")
        sh("docker", "restart", "-t", "10", cluster.container(node))
        cluster.wait_healthy()
        time.sleep(args.settle / 2)

    time.sleep(args.settle)
    stop.set()
    for thread in producers + [reader]:
        thread.join(timeout=30)
    log(f"load ran {time.time() - started:.0f} s: {sum(p.calls for p in producers)} calls acknowledged, "
        f"{sum(p.errors for p in producers)} failed (unknown outcome), reader saw {reader.read} records")
    result = audit(acked, read_everything())
    print(json.dumps(result), flush=True)
    if result["lost"] or result["duplicated"] or result["reordered"] or not result["acknowledged"]:
        log("FAILED: acknowledged records lost, duplicated or reordered")
        sys.exit(1)
    log("every acknowledged record is there exactly once, in order")


if __name__ == "__main__":
    main()

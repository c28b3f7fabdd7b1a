"""Starts a real `shoal dev` cluster for the AWS-compatibility tests."""

import os
import socket
import subprocess
import tempfile
import time
import uuid

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

SHOAL = os.path.join(os.environ.get("CARGO_TARGET_DIR", "/var/tmp/shoal-target"), "debug", "shoal")


def free_port_block(count):
    """First of `count` consecutive free ports."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        if first + count >= 65535:
            continue
        held = []
        try:
            for port in range(first, first + count):
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                held.append(s)
            return first
        except OSError:
            continue
        finally:
            for s in held:
                s.close()


def start_dev(*extra):
    grpc_port = free_port_block(3)
    aws_port = free_port_block(3)
    data = tempfile.TemporaryDirectory(prefix="shoal-aws-test-")
    process = subprocess.Popen(
        [SHOAL, "dev", "--port", str(grpc_port), "--aws-port", str(aws_port), "--metrics-addr", "", "--data-dir", data.name, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    deadline = time.time() + 30
    for line in process.stdout:
        if "ready in" in line:
            break
        assert time.time() < deadline, "shoal dev did not become ready"
    else:
        raise RuntimeError("shoal dev exited before it was ready")
    return process, data, {"endpoints": [f"http://127.0.0.1:{aws_port + i}" for i in range(3)], "grpc": f"127.0.0.1:{grpc_port}"}


def stop_dev(process, data):
    process.terminate()
    process.wait(timeout=10)
    data.cleanup()


@pytest.fixture(scope="session")
def shoal_dev():
    process, data, info = start_dev()
    yield info
    stop_dev(process, data)


SECURED_KEY = ("AKIDSHOALSECURE", "top-secret")


@pytest.fixture(scope="session")
def short_iterator_dev():
    """A cluster whose shard iterators expire after one second instead of five minutes."""
    process, data, info = start_dev("--iterator-ttl-millis", "1000")
    yield info
    stop_dev(process, data)


@pytest.fixture(scope="session")
def tls_dev():
    """A cluster serving gRPC and the AWS API over TLS only (certificates made by
    `shoal dev --tls-dir`), its nodes talking to each other over mutual TLS."""
    tls_dir = tempfile.TemporaryDirectory(prefix="shoal-tls-test-")
    process, data, info = start_dev("--tls-dir", tls_dir.name)
    info["endpoints"] = [e.replace("http://", "https://") for e in info["endpoints"]]
    info["ca"] = os.path.join(tls_dir.name, "ca.pem")
    yield info
    stop_dev(process, data)
    tls_dir.cleanup()


@pytest.fixture(scope="session")
def secured_dev():
    """A cluster that verifies SigV4 signatures against one access key."""
    process, data, info = start_dev("--aws-credential", f"{SECURED_KEY[0]}:{SECURED_KEY[1]}")
    yield info
    stop_dev(process, data)


def make_client(endpoint, region="us-east-1", key=("AKIDSHOALTEST", "secret")):
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.fixture
def kinesis(shoal_dev):
    return make_client(shoal_dev["endpoints"][0])


@pytest.fixture
def kinesis_nodes(shoal_dev):
    return [make_client(endpoint) for endpoint in shoal_dev["endpoints"]]


@pytest.fixture
def stream_name(request):
    """A fresh stream name; the stream is deleted afterwards so the shared dev
    cluster does not accumulate shard groups over the session."""
    name = "test-" + uuid.uuid4().hex[:12]
    yield name
    if "kinesis" in request.fixturenames:
        try:
            request.getfixturevalue("kinesis").delete_stream(StreamName=name, EnforceConsumerDeletion=True)
        except Exception:
            pass


def code_of(call, **kwargs):
    """The AWS error code of a call that must fail."""
    with pytest.raises(ClientError) as info:
        call(**kwargs)
    return info.value.response["Error"]["Code"]

"""The Helm chart (deploy/helm/shoal), rendered by a real helm and validated
against the Kubernetes schemas offline (kubernetes-validate)."""

import os
import subprocess

import tomllib

import kubernetes_validate
import pytest
import yaml

from get_helm import helm_path

SHOAL = os.path.join(os.environ.get("CARGO_TARGET_DIR", "/var/tmp/shoal-target"), "debug", "shoal")
CHART = os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "helm", "shoal")
K8S_VERSION = "1.30.0"
VALUE_SETS = {
    "defaults": [],
    "five-nodes-monitored": ["--set", "replicas=5", "--set", "serviceMonitor.enabled=true", "--set", "awsCredentialsSecret=shoal-keys"],
    "packed-no-limits": [
        "--set", "topologySpread.whenUnsatisfiable=ScheduleAnyway",
        "--set", "limits.enabled=false",
        "--set", "podDisruptionBudget.enabled=false",
        "--set", "persistence.storageClass=fast",
        "--set-json", 'awsCredentials=["AKID:secret"]',
    ],
    "tls": ["--set", "tls.enabled=true", "--set", "tls.secretName=shoal-tls", "--set", "tls.requireClientCert=true"],
}


@pytest.fixture(scope="module")
def helm():
    return helm_path()


def render(helm, args):
    out = subprocess.run([helm, "template", "demo", CHART, "--namespace", "streams", *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def test_helm_lint(helm):
    out = subprocess.run([helm, "lint", CHART, "--strict"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_manifests_are_valid_kubernetes(helm, name):
    docs = render(helm, VALUE_SETS[name])
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com"):
            continue  # a CRD (prometheus-operator), not in the Kubernetes schemas
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    kinds = sorted(d["kind"] for d in docs)
    assert "StatefulSet" in kinds and kinds.count("Service") == 2 and "ConfigMap" in kinds


def env_of(statefulset):
    return {e["name"]: e.get("value") for e in statefulset["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_every_node_knows_every_peer_in_its_zone(helm):
    docs = render(helm, ["--set", "replicas=5"])
    statefulset = next(d for d in docs if d["kind"] == "StatefulSet")
    peers = env_of(statefulset)["SHOAL_PEERS"].split(",")
    assert peers[0] == "1=az-a@demo-shoal-0.demo-shoal-headless.streams.svc:50051"
    assert [p.split("@")[0] for p in peers] == ["1=az-a", "2=az-b", "3=az-c", "4=az-a", "5=az-b"]
    spec = statefulset["spec"]["template"]["spec"]
    assert spec["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    probes = spec["containers"][0]
    assert probes["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert probes["livenessProbe"]["httpGet"]["path"] == "/health"
    pdb = next(d for d in docs if d["kind"] == "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1


def test_the_config_the_nodes_read_is_accepted_by_shoal(helm, tmp_path):
    docs = render(helm, ["--set", "limits.enabled=false"])
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["node.toml"]
    parsed = tomllib.loads(config)
    assert parsed["limits"]["enabled"] is False and parsed["data_dir"] == "/data"
    # Shoal's own loader (unknown keys refused) with the pod's environment.
    statefulset = next(d for d in docs if d["kind"] == "StatefulSet")
    env = {k: v for k, v in env_of(statefulset).items() if v is not None and "$(" not in v}
    env.update(HOSTNAME="demo-shoal-1", SHOAL_ADVERTISE="demo-shoal-1.demo-shoal-headless.streams.svc:50051")
    path = tmp_path / "node.toml"
    path.write_text(config)
    checked = subprocess.run([SHOAL, "node", "--config", str(path), "--check-config"], env=env, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert "node 2 (az-b) is valid" in checked.stdout


def test_tls_mounts_the_secret_and_the_node_accepts_it(helm, tmp_path):
    docs = render(helm, VALUE_SETS["tls"])
    statefulset = next(d for d in docs if d["kind"] == "StatefulSet")
    spec = statefulset["spec"]["template"]["spec"]
    assert {"name": "tls", "secret": {"secretName": "shoal-tls"}} in spec["volumes"]
    env = env_of(statefulset)
    assert env["SHOAL_TLS_CERT"] == "/etc/shoal-tls/tls.crt" and env["SHOAL_TLS_REQUIRE_CLIENT_CERT"] == "true"
    # The Secret's files, as cert-manager names them, made by `shoal tls generate`.
    made = subprocess.run([SHOAL, "tls", "generate", "--out", str(tmp_path), "--node", "demo-shoal-1.demo-shoal-headless.streams.svc"], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    files = {"tls.crt": "demo-shoal-1.demo-shoal-headless.streams.svc.pem", "tls.key": "demo-shoal-1.demo-shoal-headless.streams.svc-key.pem", "ca.crt": "ca.pem"}
    mounted = {k: str(tmp_path / v) for k, v in files.items()}
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["node.toml"]
    (tmp_path / "node.toml").write_text(config)
    env = {k: v for k, v in env.items() if v is not None and "$(" not in v}
    env.update(HOSTNAME="demo-shoal-1", SHOAL_ADVERTISE="demo-shoal-1.demo-shoal-headless.streams.svc:50051")
    env.update(SHOAL_TLS_CERT=mounted["tls.crt"], SHOAL_TLS_KEY=mounted["tls.key"], SHOAL_TLS_CA=mounted["ca.crt"])
    checked = subprocess.run([SHOAL, "node", "--config", str(tmp_path / "node.toml"), "--check-config"], env=env, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    # A key that does not belong to the certificate is caught before the node starts.
    env.update(SHOAL_TLS_KEY=str(tmp_path / "client-key.pem"))
    refused = subprocess.run([SHOAL, "node", "--config", str(tmp_path / "node.toml"), "--check-config"], env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "usable identity" in refused.stderr


def test_tls_without_a_secret_is_refused_at_render_time(helm):
    out = subprocess.run([helm, "template", "demo", CHART, "--set", "tls.enabled=true"], capture_output=True, text=True)
    assert out.returncode != 0 and "tls.secretName is required" in out.stderr

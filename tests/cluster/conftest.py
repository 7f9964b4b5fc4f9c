"""
Fixtures for the cluster tests: a Kubernetes API over HTTP (see ``emulator.py``), helm with its
own configuration, and a stand-in kubelet/controllers that the tests drive by hand.
"""

from __future__ import annotations

import datetime
import os
import shutil
import sys
from pathlib import Path

import pytest
from kubernetes import client

from cilium_lab.cluster import kube
from emulator import Emulator

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "tests" / "charts" / "cilium"
VENV_BIN = Path(sys.executable).parent

pytestmark = pytest.mark.cluster


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/cluster" in str(item.fspath):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture
def api(tmp_path):
    with Emulator(tmp_path) as emulator:
        yield emulator


@pytest.fixture
def cluster(api):
    return kube.load(str(api.kubeconfig))


@pytest.fixture
def helm_bin():
    found = shutil.which("helm") or shutil.which("helm", path=str(VENV_BIN))
    if not found:
        pytest.fail("helm is not installed: run `python scripts/install_helm.py` (make test does)")
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


def now(offset: float = 0) -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0) + datetime.timedelta(
        seconds=offset
    )


def stamp(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Kubelet:
    """The tests' stand-in for kubelets and controllers: sets objects and status over the API."""

    def __init__(self, cluster: kube.Cluster, namespace: str = "kube-system"):
        self.cluster = cluster
        self.core = cluster.core
        self.apps = cluster.apps
        self.namespace = namespace

    def node(self, name: str, ip: str, ready: bool = True):
        self.core.create_node({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
        self.node_status(name, ip, ready)

    def node_status(self, name: str, ip: str, ready: bool):
        self.core.patch_node_status(name, {"status": {
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        }})

    def cilium(self, nodes: int, ready: int = 0, operator_available: int = 0):
        """The chart's DaemonSet and Deployment, with the status their controllers would set."""
        self.apps.create_namespaced_daemon_set(self.namespace, {
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "cilium", "namespace": self.namespace, "labels": {"k8s-app": "cilium"}},
            "spec": {"selector": {"matchLabels": {"k8s-app": "cilium"}},
                     "template": {"metadata": {"labels": {"k8s-app": "cilium"}},
                                  "spec": {"containers": [{"name": "cilium-agent", "image": "x"}]}}},
        })
        self.apps.create_namespaced_deployment(self.namespace, {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "cilium-operator", "namespace": self.namespace},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"name": "cilium-operator"}},
                     "template": {"metadata": {"labels": {"name": "cilium-operator"}},
                                  "spec": {"containers": [{"name": "op", "image": "x"}]}}},
        })
        self.daemonset_status(nodes, ready)
        self.operator_status(operator_available)

    def daemonset_status(self, desired: int, ready: int, scheduled: int | None = None):
        self.apps.patch_namespaced_daemon_set_status("cilium", self.namespace, {"status": {
            "desiredNumberScheduled": desired,
            "currentNumberScheduled": desired if scheduled is None else scheduled,
            "numberReady": ready, "numberMisscheduled": 0,
        }})

    def operator_status(self, available: int):
        self.apps.patch_namespaced_deployment_status("cilium-operator", self.namespace, {"status": {
            "availableReplicas": available, "replicas": 2,
            "conditions": [{"type": "Available", "status": "True" if available else "False"}],
        }})

    def agent(self, node: str, ip: str | None, ready: bool, host_network: bool = True,
              ready_at: datetime.datetime | None = None):
        name = f"cilium-{node}"
        self.core.create_namespaced_pod(self.namespace, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": self.namespace, "labels": {"k8s-app": "cilium"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "cilium",
                                              "uid": "ds-uid", "controller": True}]},
            "spec": {"nodeName": node, "hostNetwork": host_network,
                     "containers": [{"name": "cilium-agent", "image": "x"}]},
        })
        self.agent_status(node, ip, ready, ready_at)

    def agent_status(self, node: str, ip: str | None, ready: bool,
                     ready_at: datetime.datetime | None = None):
        self.core.patch_namespaced_pod_status(f"cilium-{node}", self.namespace, {"status": {
            "phase": "Running" if ready else "Pending", "podIP": ip, "hostIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                            "lastTransitionTime": stamp(ready_at or now())}],
        }})

    def pod(self, namespace: str, name: str, node: str, ip: str, started: datetime.datetime,
            owner_kind: str | None = "ReplicaSet", host_network: bool = False):
        metadata = {"name": name, "namespace": namespace}
        if owner_kind:
            metadata["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner_kind,
                                            "name": f"{name}-owner", "uid": f"{name}-uid",
                                            "controller": True}]
        self.core.create_namespaced_pod(namespace, {
            "apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": {"nodeName": node, "hostNetwork": host_network,
                     "containers": [{"name": "app", "image": "x"}]},
        })
        self.core.patch_namespaced_pod_status(name, namespace, {"status": {
            "phase": "Running", "podIP": ip, "startTime": stamp(started),
            "conditions": [{"type": "Ready", "status": "True"}],
        }})

    def pod_names(self, namespace: str | None = None) -> set[str]:
        pods = self.core.list_pod_for_all_namespaces().items
        return {f"{p.metadata.namespace}/{p.metadata.name}" for p in pods
                if namespace is None or p.metadata.namespace == namespace}


@pytest.fixture
def kubelet(cluster):
    return Kubelet(cluster)


LAB_NODES = [("control0", "192.168.1.11"), ("worker0", "192.168.1.14"), ("worker1", "192.168.1.15")]

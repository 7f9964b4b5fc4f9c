"""
What the guide's cluster holds before the chapter, created through the API with the official
client: the Node objects (kubelets register them on a real cluster; kwok only plays them), the
DNS Deployment in ``kube-system``, a user Deployment and a bare pod in ``default``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import click
from kubernetes import utils
from kubernetes.client.rest import ApiException

from cilium_lab.cluster import ClusterError
from cilium_lab.cluster.kube import Cluster
from cilium_lab.sim import SimError

# A label the sim puts on what it creates, so tests and `sim status` can tell them apart.
LABEL = "cilium-lab.sim/guide"
# The guide's cluster DNS Service address, and the user app's NodePort.
DNS_IP = "10.32.0.10"
WEB_NODE_PORT = 30080


@dataclass
class NodeSpec:
    name: str
    address: str
    pod_cidr: str
    control: bool = False


def node_ready(node) -> bool:
    """Whether a Node object (or None) reports Ready."""
    conditions = (node.status.conditions if node is not None and node.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def poll(check, timeout: float, echo, failure) -> None:
    """Call ``check`` every second until it returns None; else it returns what is still awaited,
    said every 5 s with the time so far. After ``timeout`` seconds: SimError(failure(what))."""
    started = time.monotonic()
    last_report = 0.0
    while (waiting := check()) is not None:
        elapsed = time.monotonic() - started
        if elapsed > timeout:
            raise SimError(failure(waiting))
        if elapsed - last_report >= 5 or not last_report:
            last_report = elapsed or 0.01
            echo(f"  [{elapsed:3.0f}s] {waiting}")
        time.sleep(1)


def wait_api(cluster: Cluster, timeout: float, echo=click.echo, accounts: bool = True) -> None:
    """Until the API server answers and, with ``accounts``, the controllers have made the default
    service accounts (pods cannot be created before)."""

    def check():
        try:
            cluster.call(cluster.core.list_namespace)
            if accounts:
                cluster.call(cluster.core.read_namespaced_service_account, "default", "default")
                cluster.call(cluster.core.read_namespaced_service_account, "default", "kube-system")
            return None
        except ClusterError as error:
            return f"control plane: API server not answering ({str(error).rsplit(': ', 1)[-1]})"
        except ApiException as error:
            if error.status == 404:
                return "control plane: waiting for the default service accounts"
            return f"control plane: API server answers {error.status}"

    poll(
        check,
        timeout,
        echo,
        lambda why: f"the API server at {cluster.server} was not ready after {timeout:.0f}s: {why}",
    )


def register_nodes(cluster: Cluster, nodes: list[NodeSpec]) -> None:
    """The Node objects, with the guide's pod CIDRs and each node's address as its InternalIP."""
    for node in nodes:
        labels = {"kubernetes.io/hostname": node.name, "kubernetes.io/os": "linux", LABEL: "node"}
        if node.control:
            labels["node-role.kubernetes.io/control-plane"] = ""
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": node.name, "labels": labels},
            "spec": {"podCIDR": node.pod_cidr, "podCIDRs": [node.pod_cidr]},
        }
        try:
            cluster.call(cluster.core.create_node, body)
        except ApiException as error:
            if error.status != 409:
                raise SimError(
                    f"creating Node {node.name} failed: {error.status} {error.reason}"
                ) from None
        cluster.call(
            cluster.core.patch_node_status,
            node.name,
            {
                "status": {
                    "addresses": [
                        {"type": "InternalIP", "address": node.address},
                        {"type": "Hostname", "address": node.name},
                    ]
                }
            },
        )


def _deployment(
    name: str, namespace: str, labels: dict, replicas: int, image: str, **pod: object
) -> dict:
    container = {"name": name, "image": image, **pod.pop("container", {})}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": {**labels, LABEL: "workload"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": {**labels, LABEL: "workload"}},
                "spec": {"containers": [container], **pod},
            },
        },
    }


def _meta(kind: str, name: str, namespace: str | None = None, api: str = "v1") -> dict:
    metadata = {"name": name, "labels": {LABEL: "workload"}}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": api, "kind": kind, "metadata": metadata}


# CoreDNS as the guide's DNS chapter runs it, minus upstream forwarding (nothing is reachable).
COREFILE = """.:53 {
    errors
    health
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 30
    loop
    reload
    loadbalance
}
"""


def _coredns(images: dict[str, str] | None) -> list[dict]:
    """The DNS add-on: on the kwok lab a Deployment only; on the real one with its
    configuration and the permissions it reads the cluster with."""
    if images is None:
        return [
            _deployment(
                "coredns", "kube-system", {"k8s-app": "kube-dns"}, 2, "coredns/coredns:1.11.1"
            )
        ]
    rules = [
        {
            "apiGroups": [""],
            "resources": ["endpoints", "services", "pods", "namespaces"],
            "verbs": ["list", "watch"],
        },
        {
            "apiGroups": ["discovery.k8s.io"],
            "resources": ["endpointslices"],
            "verbs": ["list", "watch"],
        },
    ]
    role = {
        **_meta("ClusterRole", "system:coredns", api="rbac.authorization.k8s.io/v1"),
        "rules": rules,
    }
    binding = {
        **_meta("ClusterRoleBinding", "system:coredns", api="rbac.authorization.k8s.io/v1"),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "system:coredns",
        },
        "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}],
    }
    config = {**_meta("ConfigMap", "coredns", "kube-system"), "data": {"Corefile": COREFILE}}
    deployment = _deployment(
        "coredns",
        "kube-system",
        {"k8s-app": "kube-dns"},
        2,
        images["coredns"],
        container={
            "args": ["-conf", "/etc/coredns/Corefile"],
            "ports": [
                {"containerPort": 53, "protocol": "UDP"},
                {"containerPort": 53, "protocol": "TCP"},
            ],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns"}],
        },
        serviceAccountName="coredns",
        volumes=[{"name": "config", "configMap": {"name": "coredns"}}],
    )
    return [_meta("ServiceAccount", "coredns", "kube-system"), role, binding, config, deployment]


def guide_workloads(images: dict[str, str] | None = None) -> list[dict]:
    """The DNS add-on of the guide's chapter on DNS, and a user's app with its Service and a bare
    pod. ``images`` (``coredns``, ``agnhost``) are the real data plane's; without them the
    pods are only played by kwok, and their images are never pulled."""
    if images is None:
        web = _deployment("nginx", "default", {"app": "nginx"}, 2, "nginx:1.27")
        bare = {"name": "busybox", "image": "busybox:1.36", "command": ["sleep", "infinity"]}
    else:
        # agnhost stands in for nginx (nothing else serves HTTP here): its netexec serves on 80.
        web = _deployment(
            "nginx",
            "default",
            {"app": "nginx"},
            2,
            images["agnhost"],
            container={"args": ["netexec", "--http-port=80", "--udp-port=-1"]},
        )
        bare = {"name": "busybox", "image": images["agnhost"], "args": ["pause"]}
    return [
        *_coredns(images),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "kube-dns",
                "namespace": "kube-system",
                "labels": {"k8s-app": "kube-dns", LABEL: "workload"},
            },
            "spec": {
                "clusterIP": DNS_IP,
                "selector": {"k8s-app": "kube-dns"},
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                ],
            },
        },
        web,
        {
            **_meta("Service", "nginx", "default"),
            "spec": {
                "type": "NodePort",
                "selector": {"app": "nginx"},
                "ports": [{"name": "http", "port": 80, "nodePort": WEB_NODE_PORT}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "busybox",
                "namespace": "default",
                "labels": {"app": "busybox", LABEL: "workload"},
            },
            "spec": {"containers": [bare]},
        },
    ]


def expected_pods() -> int:
    return sum(
        body["spec"]["replicas"] if body["kind"] == "Deployment" else 1
        for body in guide_workloads()
        if body["kind"] in ("Deployment", "Pod")
    )


def create_workloads(cluster: Cluster, images: dict[str, str] | None = None) -> None:
    for body in guide_workloads(images):
        try:
            utils.create_from_dict(cluster.api_client, body)
        except utils.FailToCreateError as failure:
            for error in failure.api_exceptions:
                if error.status != 409:
                    name = f"{body['kind']} {body['metadata'].get('namespace', '')}/{body['metadata']['name']}"
                    raise SimError(
                        f"creating {name} failed: {error.status} {error.reason}"
                    ) from None


def _waiting_on(pod) -> str:
    """Why a pod of the guide is not running yet, in the kubelet's words (ErrImagePull, ...)."""
    for status in (pod.status.container_statuses or []) + (
        pod.status.init_container_statuses or []
    ):
        waiting = status.state.waiting if status.state else None
        if waiting and waiting.reason and waiting.reason != "PodInitializing":
            return f"{pod.metadata.name}: {waiting.reason}"
    return f"{pod.metadata.name}: {pod.status.phase}"


def wait_workloads(
    cluster: Cluster, nodes: int, timeout: float, echo=click.echo, played: bool = True
) -> None:
    """Until every node is Ready and the guide's pods run with addresses; ``played``: kwok plays
    the kubelets, else real kubelets pull the images and start the containers."""
    expected = expected_pods()
    journals = "kubelet.service (kwok)" if played else "kubelet.service and containerd.service"

    def check():
        ready = [n for n in cluster.call(cluster.core.list_node).items if node_ready(n)]
        pods = cluster.call(cluster.core.list_pod_for_all_namespaces, label_selector=LABEL).items
        running = [p for p in pods if p.status.phase == "Running" and p.status.pod_ip]
        if len(ready) >= nodes and len(running) == len(pods) == expected:
            return None
        stuck = sorted(_waiting_on(p) for p in pods if p not in running)
        return (
            f"{len(ready)}/{nodes} nodes Ready, {len(running)}/{expected} of the guide's pods running"
            + (f" (waiting: {', '.join(stuck[:4])})" if stuck else "")
        )

    poll(
        check,
        timeout,
        echo,
        lambda where: (
            f"not ready after {timeout:.0f}s: {where}; see each node's journal for {journals}"
        ),
    )
    echo(f"  {nodes}/{nodes} nodes Ready, the guide's {expected} pods running")

"""
Is Cilium up on every node? One snapshot of the API, judged per node; and a wait on watches.

Healthy means: the DaemonSet (``kube-system/cilium``) is scheduled and ready on every node, the
operator Deployment is available, every agent pod runs on ``hostNetwork`` with its node's
InternalIP, and every node is Ready.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import asdict, dataclass, field

import urllib3
from kubernetes import watch
from kubernetes.client.rest import ApiException

from cilium_lab.cluster import ClusterError
from cilium_lab.cluster.kube import Cluster

AGENT_DAEMONSET = "cilium"
AGENT_SELECTOR = {"k8s-app": "cilium"}
OPERATOR_DEPLOYMENT = "cilium-operator"


@dataclass
class NodeHealth:
    node: str
    internal_ip: str | None
    node_ready: bool
    agent: str | None = None
    agent_ready: bool = False
    agent_ip: str | None = None
    host_network: bool = False
    missing: list[str] = field(default_factory=list)


@dataclass
class Health:
    healthy: bool
    nodes: list[NodeHealth]
    daemonset: dict
    operator: dict
    problems: list[str]

    @property
    def agents_ready(self) -> int:
        return sum(1 for n in self.nodes if n.agent_ready)

    @property
    def nodes_ready(self) -> int:
        return sum(1 for n in self.nodes if n.node_ready)

    def progress(self) -> str:
        total = len(self.nodes)
        return (
            f"agents ready {self.agents_ready}/{total}, nodes ready {self.nodes_ready}/{total}, "
            f"operator available {self.operator.get('available', 0)}/{self.operator.get('replicas', 0)}"
        )

    def as_dict(self) -> dict:
        data = asdict(self)
        data["agents_ready"] = self.agents_ready
        data["nodes_ready"] = self.nodes_ready
        return data


def _labels_match(obj, selector: dict) -> bool:
    labels = obj.metadata.labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def _condition(conditions, kind: str) -> str | None:
    for condition in conditions or []:
        if condition.type == kind:
            return condition.status
    return None


def _internal_ip(node) -> str | None:
    for address in (node.status and node.status.addresses) or []:
        if address.type == "InternalIP":
            return address.address
    return None


def selector_string(selector: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in selector.items())


def snapshot(cluster: Cluster, namespace: str = "kube-system") -> Health:
    """Read nodes, the agent DaemonSet and pods, and the operator; judge them."""
    nodes = cluster.call(cluster.core.list_node).items
    # The selector is for real servers; the filter below also holds where it is ignored.
    pods = [
        pod
        for pod in cluster.call(
            cluster.core.list_namespaced_pod, namespace, label_selector=selector_string(AGENT_SELECTOR)
        ).items
        if _labels_match(pod, AGENT_SELECTOR) and not pod.metadata.deletion_timestamp
    ]
    daemonset = _read_or_none(cluster, cluster.apps.read_namespaced_daemon_set, AGENT_DAEMONSET, namespace)
    deployment = _read_or_none(
        cluster, cluster.apps.read_namespaced_deployment, OPERATOR_DEPLOYMENT, namespace
    )
    return judge(nodes, pods, daemonset, deployment, namespace)


def _read_or_none(cluster: Cluster, function, name: str, namespace: str):
    try:
        return cluster.call(function, name, namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise ClusterError(
            f"reading {namespace}/{name} from {cluster.server} failed: {error.status} {error.reason}"
        ) from None


def judge(nodes, pods, daemonset, deployment, namespace: str = "kube-system") -> Health:
    problems: list[str] = []
    agents_by_node: dict[str, list] = {}
    for pod in pods:
        agents_by_node.setdefault(pod.spec.node_name or "", []).append(pod)

    report: list[NodeHealth] = []
    for node in sorted(nodes, key=lambda n: n.metadata.name):
        name = node.metadata.name
        health = NodeHealth(
            node=name,
            internal_ip=_internal_ip(node),
            node_ready=_condition(node.status and node.status.conditions, "Ready") == "True",
        )
        agents = agents_by_node.get(name, [])
        # Prefer a ready agent when a rollout leaves two on one node.
        agents.sort(key=lambda p: _condition(p.status and p.status.conditions, "Ready") != "True")
        if not agents:
            health.missing.append("no cilium agent pod scheduled")
        else:
            agent = agents[0]
            health.agent = agent.metadata.name
            health.agent_ready = _condition(agent.status and agent.status.conditions, "Ready") == "True"
            health.agent_ip = agent.status.pod_ip if agent.status else None
            health.host_network = bool(agent.spec.host_network)
            if not health.agent_ready:
                phase = (agent.status and agent.status.phase) or "Pending"
                health.missing.append(f"agent {agent.metadata.name} not ready ({phase})")
            if not health.host_network:
                health.missing.append(f"agent {agent.metadata.name} not on hostNetwork")
            if health.agent_ip != health.internal_ip:
                health.missing.append(
                    f"agent IP {health.agent_ip or 'none'} is not the node's InternalIP "
                    f"{health.internal_ip or 'none'}"
                )
        if not health.node_ready:
            health.missing.append("node not Ready")
        report.append(health)

    node_names = {n.node for n in report}
    for stray in sorted(set(agents_by_node) - node_names):
        problems.append(f"agent pods on unknown node {stray or '(unscheduled)'}")

    ds = {"exists": daemonset is not None, "desired": 0, "scheduled": 0, "ready": 0}
    if daemonset is None:
        problems.append(f"DaemonSet {namespace}/{AGENT_DAEMONSET} does not exist")
    else:
        status = daemonset.status
        ds.update(
            desired=(status and status.desired_number_scheduled) or 0,
            scheduled=(status and status.current_number_scheduled) or 0,
            ready=(status and status.number_ready) or 0,
        )
        if ds["desired"] != len(report):
            problems.append(
                f"DaemonSet {namespace}/{AGENT_DAEMONSET} wants {ds['desired']} pods for {len(report)} nodes"
            )
        if ds["scheduled"] < ds["desired"] or ds["ready"] < ds["desired"]:
            problems.append(
                f"DaemonSet {namespace}/{AGENT_DAEMONSET}: {ds['scheduled']} scheduled, "
                f"{ds['ready']} ready of {ds['desired']}"
            )

    operator = {"exists": deployment is not None, "replicas": 0, "available": 0}
    if deployment is None:
        problems.append(f"Deployment {namespace}/{OPERATOR_DEPLOYMENT} does not exist")
    else:
        status = deployment.status
        operator.update(
            replicas=deployment.spec.replicas if deployment.spec.replicas is not None else 1,
            available=(status and status.available_replicas) or 0,
        )
        condition = _condition(status and status.conditions, "Available")
        if operator["available"] < 1 or condition == "False":
            problems.append(f"Deployment {namespace}/{OPERATOR_DEPLOYMENT} is not available")

    if not report:
        problems.append("the cluster has no nodes")
    healthy = not problems and all(not n.missing for n in report)
    return Health(healthy=healthy, nodes=report, daemonset=ds, operator=operator, problems=problems)


class _Watcher(threading.Thread):
    """Puts a token on a queue whenever one resource changes; restarts its watch when it ends."""

    def __init__(self, cluster: Cluster, function, args, events: queue.Queue, stop: threading.Event):
        super().__init__(daemon=True)
        self.cluster, self.function, self.args = cluster, function, args
        self.events, self.stop = events, stop
        self.watch = watch.Watch()

    def run(self):
        while not self.stop.is_set():
            try:
                for _ in self.watch.stream(
                    self.function, *self.args, timeout_seconds=30, _request_timeout=(5, 35)
                ):
                    self.events.put(self.function.__name__)
                    if self.stop.is_set():
                        break
            except (urllib3.exceptions.HTTPError, OSError, ApiException, ValueError, AttributeError) as error:
                # A watch the server or the client timed out: start another, after a breath on errors
                # other than a read timeout, so a server that is down is not hammered.
                if not isinstance(error, urllib3.exceptions.ReadTimeoutError):
                    self.stop.wait(1)
        self.watch.stop()


def wait(
    cluster: Cluster,
    namespace: str = "kube-system",
    timeout: float = 600,
    progress=None,
    clock=time.monotonic,
) -> Health:
    """Re-judge on every change that the watches see, until healthy or ``timeout`` seconds pass."""
    deadline = clock() + timeout
    health = snapshot(cluster, namespace)
    if health.healthy or timeout <= 0:
        return health
    if progress:
        progress(health.progress())

    events: queue.Queue = queue.Queue()
    stop = threading.Event()
    watchers = [
        _Watcher(cluster, cluster.core.list_node, (), events, stop),
        _Watcher(cluster, cluster.core.list_namespaced_pod, (namespace,), events, stop),
        _Watcher(cluster, cluster.apps.list_namespaced_daemon_set, (namespace,), events, stop),
        _Watcher(cluster, cluster.apps.list_namespaced_deployment, (namespace,), events, stop),
    ]
    for watcher in watchers:
        watcher.start()
    try:
        last = health.progress()
        while True:
            remaining = deadline - clock()
            if remaining <= 0:
                break
            try:
                events.get(timeout=remaining)
            except queue.Empty:
                break
            # One snapshot for a burst of events.
            while not events.empty():
                events.get_nowait()
            health = snapshot(cluster, namespace)
            if health.healthy:
                return health
            if progress and health.progress() != last:
                last = health.progress()
                progress(last)
        return snapshot(cluster, namespace)
    finally:
        stop.set()
        for watcher in watchers:
            watcher.watch.stop()  # closes its response, so the thread's read ends now
        for watcher in watchers:
            watcher.join(timeout=2)

"""
Is Cilium up on every node? One snapshot of the API, judged per node; and a wait on watches.

Healthy means what ``cilium status --wait`` checks: every workload the release deploys (the
``cilium`` and ``cilium-envoy`` DaemonSets, the ``cilium-operator`` Deployment, Hubble Relay when
enabled: whatever carries ``app.kubernetes.io/part-of=cilium``) has caught up with its spec
(``observedGeneration``) and has as many pods updated and ready as it wants; every agent pod runs
on ``hostNetwork`` with its node's InternalIP; every node is Ready. A pod of the release that
failed or is in CrashLoopBackOff makes the wait fail at once rather than time out.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import asdict, dataclass, field

import urllib3
from kubernetes import watch
from kubernetes.client.rest import ApiException

from cilium_lab.cluster.kube import Cluster

AGENT_DAEMONSET = "cilium"
AGENT_SELECTOR = {"k8s-app": "cilium"}
OPERATOR_DEPLOYMENT = "cilium-operator"
# What the chart labels every workload and pod of the release with.
RELEASE_SELECTOR = {"app.kubernetes.io/part-of": "cilium"}
# Workloads every release has; the others are checked when the release deploys them.
REQUIRED = (("DaemonSet", AGENT_DAEMONSET), ("Deployment", OPERATOR_DEPLOYMENT))
# Container states that do not get better by waiting.
FAILING = ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError")


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
class Workload:
    kind: str
    name: str
    desired: int
    updated: int
    ready: int
    generation: int
    observed_generation: int

    @property
    def caught_up(self) -> bool:
        return self.observed_generation >= self.generation and self.desired == self.updated == self.ready

    def describe(self) -> str:
        return f"{self.kind} {self.name}: {self.ready}/{self.desired} ready, {self.updated} updated"


@dataclass
class Health:
    healthy: bool
    nodes: list[NodeHealth]
    workloads: list[Workload]
    problems: list[str]
    # Pods of the release that failed or crash-loop: waiting does not help.
    failing: list[str] = field(default_factory=list)

    @property
    def agents_ready(self) -> int:
        return sum(1 for n in self.nodes if n.agent_ready)

    @property
    def nodes_ready(self) -> int:
        return sum(1 for n in self.nodes if n.node_ready)

    def progress(self) -> str:
        total = len(self.nodes)
        others = ", ".join(
            f"{w.name} {w.ready}/{w.desired}" for w in self.workloads if w.name != AGENT_DAEMONSET
        )
        return f"agents ready {self.agents_ready}/{total}, nodes ready {self.nodes_ready}/{total}" + (
            f", {others}" if others else ""
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
    """Read the nodes and the release's workloads and pods; judge them."""
    selector = selector_string(RELEASE_SELECTOR)
    nodes = cluster.call(cluster.core.list_node).items
    pods = [
        pod
        for pod in cluster.call(cluster.core.list_namespaced_pod, namespace, label_selector=selector).items
        if not pod.metadata.deletion_timestamp
    ]
    daemonsets = cluster.call(cluster.apps.list_namespaced_daemon_set, namespace, label_selector=selector).items
    deployments = cluster.call(cluster.apps.list_namespaced_deployment, namespace, label_selector=selector).items
    return judge(nodes, pods, daemonsets, deployments, namespace)


def workload(kind: str, obj) -> Workload:
    status = obj.status
    if kind == "DaemonSet":
        desired = (status and status.desired_number_scheduled) or 0
        updated = (status and status.updated_number_scheduled) or 0
        ready = (status and status.number_ready) or 0
    else:
        desired = obj.spec.replicas if obj.spec.replicas is not None else 1
        updated = (status and status.updated_replicas) or 0
        ready = (status and status.ready_replicas) or 0
    return Workload(kind, obj.metadata.name, desired, updated, ready, obj.metadata.generation or 0,
                    (status and status.observed_generation) or 0)


def _failing(pod) -> str | None:
    status = pod.status
    if status and status.phase == "Failed":
        return f"pod {pod.metadata.name} failed ({status.reason or 'no reason given'})"
    for container in ((status and status.container_statuses) or []) + ((status and status.init_container_statuses) or []):
        waiting = container.state and container.state.waiting
        if waiting and waiting.reason in FAILING:
            return f"pod {pod.metadata.name} container {container.name}: {waiting.reason}"
    return None


def judge(nodes, pods, daemonsets, deployments, namespace: str = "kube-system") -> Health:
    problems: list[str] = []
    agents_by_node: dict[str, list] = {}
    for pod in pods:
        if _labels_match(pod, AGENT_SELECTOR):
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

    found = [workload("DaemonSet", d) for d in daemonsets] + [workload("Deployment", d) for d in deployments]
    found.sort(key=lambda w: (w.kind, w.name))
    names = {(w.kind, w.name) for w in found}
    for kind, name in REQUIRED:
        if (kind, name) not in names:
            problems.append(f"{kind} {namespace}/{name} does not exist")
    for w in found:
        if w.observed_generation < w.generation:
            problems.append(f"{w.kind} {namespace}/{w.name}: generation {w.generation} not yet observed by its controller")
        elif not w.caught_up:
            problems.append(f"{w.kind} {namespace}/{w.name}: {w.desired} desired, {w.updated} updated, {w.ready} ready")
        if (w.kind, w.name) == ("DaemonSet", AGENT_DAEMONSET) and w.desired != len(report):
            problems.append(f"DaemonSet {namespace}/{w.name} wants {w.desired} pods for {len(report)} nodes")

    failing = sorted(filter(None, (_failing(pod) for pod in pods)))
    problems.extend(failing)
    if not report:
        problems.append("the cluster has no nodes")
    healthy = not problems and all(not n.missing for n in report)
    return Health(healthy=healthy, nodes=report, workloads=found, problems=problems, failing=failing)


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
    if health.healthy or health.failing or timeout <= 0:
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
            if health.healthy or health.failing:
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

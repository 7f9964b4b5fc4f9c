"""
Is Cilium up on every node? One snapshot of the API, judged per node; and a wait on watches.

Healthy means what ``cilium status --wait`` checks: every workload the release deploys (the
``cilium`` and ``cilium-envoy`` DaemonSets, the ``cilium-operator`` Deployment, Hubble Relay when
enabled: whatever carries ``app.kubernetes.io/part-of=cilium``) has caught up with its spec
(``observedGeneration``) and has as many pods updated and ready as it wants; every agent pod runs
on ``hostNetwork`` with its node's InternalIP; every node is Ready. A pod of the release that
failed or is in CrashLoopBackOff makes the wait fail at once rather than time out; a finished
pod (evicted, or done) that a workload of the release owns does not: its workload replaces it,
and the workload's own counts say whether it has.
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
# Seconds between two progress lines of a wait that sees no change.
PROGRESS_EVERY = 5.0
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
        return (
            self.observed_generation >= self.generation
            and self.desired == self.updated == self.ready
        )

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

    def waiting_for(self, most: int = 3) -> list[str]:
        """What is not there yet, node by node then the problems, the first ``most`` of them."""
        found = [f"{n.node}: {'; '.join(n.missing)}" for n in self.nodes if n.missing]
        found += self.problems
        return found[:most] + ([f"{len(found) - most} more"] if len(found) > most else [])

    def progress(self) -> str:
        total = len(self.nodes)
        others = ", ".join(
            f"{w.name} {w.ready}/{w.desired}" for w in self.workloads if w.name != AGENT_DAEMONSET
        )
        missing = self.waiting_for()
        return (
            f"agents ready {self.agents_ready}/{total}, nodes ready {self.nodes_ready}/{total}"
            + (f", {others}" if others else "")
            + (f"; waiting for {'; '.join(missing)}" if missing else "")
        )

    def as_dict(self) -> dict:
        data = asdict(self)
        data["agents_ready"] = self.agents_ready
        data["nodes_ready"] = self.nodes_ready
        return data


def lookup(obj: dict, *path, default=None):
    """``obj[a][b]...`` of an API object as JSON, ``default`` where any part is missing."""
    for key in path:
        if not isinstance(obj, dict) or obj.get(key) is None:
            return default
        obj = obj[key]
    return obj


def labels_match(obj: dict, selector: dict) -> bool:
    labels = lookup(obj, "metadata", "labels", default={})
    return all(labels.get(k) == v for k, v in selector.items())


def condition(obj: dict, kind: str) -> str | None:
    for entry in lookup(obj, "status", "conditions", default=[]):
        if entry.get("type") == kind:
            return entry.get("status")
    return None


def name(obj: dict) -> str:
    return lookup(obj, "metadata", "name", default="")


def _internal_ip(node: dict) -> str | None:
    for address in lookup(node, "status", "addresses", default=[]):
        if address.get("type") == "InternalIP":
            return address.get("address")
    return None


def selector_string(selector: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in selector.items())


def snapshot(cluster: Cluster, namespace: str = "kube-system") -> Health:
    """Read the nodes and the release's workloads and pods (as JSON); judge them."""
    selector = selector_string(RELEASE_SELECTOR)
    nodes = cluster.get("/api/v1/nodes")["items"]
    pods = [
        pod
        for pod in cluster.get(f"/api/v1/namespaces/{namespace}/pods", labelSelector=selector)[
            "items"
        ]
        if not lookup(pod, "metadata", "deletionTimestamp")
    ]
    daemonsets = cluster.get(
        f"/apis/apps/v1/namespaces/{namespace}/daemonsets", labelSelector=selector
    )["items"]
    deployments = cluster.get(
        f"/apis/apps/v1/namespaces/{namespace}/deployments", labelSelector=selector
    )["items"]
    return judge(nodes, pods, daemonsets, deployments, namespace)


def workload(kind: str, obj: dict) -> Workload:
    status = obj.get("status") or {}
    if kind == "DaemonSet":
        desired = status.get("desiredNumberScheduled") or 0
        updated = status.get("updatedNumberScheduled") or 0
        ready = status.get("numberReady") or 0
    else:
        replicas = lookup(obj, "spec", "replicas")
        desired = replicas if replicas is not None else 1
        updated = status.get("updatedReplicas") or 0
        ready = status.get("readyReplicas") or 0
    return Workload(
        kind,
        name(obj),
        desired,
        updated,
        ready,
        lookup(obj, "metadata", "generation", default=0),
        status.get("observedGeneration") or 0,
    )


def owning_workload(pod: dict) -> tuple[str, str] | None:
    """(kind, name) of the DaemonSet or Deployment whose pod this is, by its controller reference
    (a Deployment's through its ReplicaSet, named ``DEPLOYMENT-<pod-template-hash>``)."""
    for ref in lookup(pod, "metadata", "ownerReferences", default=[]):
        if not ref.get("controller"):
            continue
        if ref.get("kind") == "DaemonSet":
            return ("DaemonSet", ref.get("name"))
        template_hash = lookup(pod, "metadata", "labels", "pod-template-hash")
        if ref.get("kind") == "ReplicaSet" and template_hash:
            deployment, _, suffix = (ref.get("name") or "").rpartition("-")
            if suffix == template_hash:
                return ("Deployment", deployment)
    return None


def _failing(pod: dict, workloads: set[tuple[str, str]]) -> str | None:
    """Why waiting will not help this pod, or None. A finished pod (evicted, or done) of one of
    the release's ``workloads`` is its workload's to replace, which the counts judge."""
    status = pod.get("status") or {}
    where = f"pod {name(pod)} on {lookup(pod, 'spec', 'nodeName') or '(no node)'}"
    if status.get("phase") in ("Succeeded", "Failed"):
        if status.get("phase") == "Succeeded" or owning_workload(pod) in workloads:
            return None
        return f"{where} failed ({status.get('reason') or 'no reason given'})"
    for container in (status.get("containerStatuses") or []) + (
        status.get("initContainerStatuses") or []
    ):
        waiting = lookup(container, "state", "waiting", default={})
        if waiting.get("reason") in FAILING:
            return f"{where} container {container.get('name')}: {waiting['reason']}"
    return None


def judge(nodes, pods, daemonsets, deployments, namespace: str = "kube-system") -> Health:
    """Judge the API objects (as JSON) that :func:`snapshot` reads."""
    problems: list[str] = []
    agents_by_node: dict[str, list] = {}
    for pod in pods:
        if labels_match(pod, AGENT_SELECTOR):
            agents_by_node.setdefault(lookup(pod, "spec", "nodeName", default=""), []).append(pod)

    report: list[NodeHealth] = []
    for node in sorted(nodes, key=name):
        health = NodeHealth(
            node=name(node),
            internal_ip=_internal_ip(node),
            node_ready=condition(node, "Ready") == "True",
        )
        agents = agents_by_node.get(health.node, [])
        # Prefer a ready agent when a rollout leaves two on one node.
        agents.sort(key=lambda p: condition(p, "Ready") != "True")
        if not agents:
            health.missing.append("no cilium agent pod scheduled")
        else:
            agent = agents[0]
            health.agent = name(agent)
            health.agent_ready = condition(agent, "Ready") == "True"
            health.agent_ip = lookup(agent, "status", "podIP")
            health.host_network = bool(lookup(agent, "spec", "hostNetwork"))
            if not health.agent_ready:
                phase = lookup(agent, "status", "phase", default="Pending")
                health.missing.append(f"agent {health.agent} not ready ({phase})")
            if not health.host_network:
                health.missing.append(f"agent {health.agent} not on hostNetwork")
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

    found = [workload("DaemonSet", d) for d in daemonsets] + [
        workload("Deployment", d) for d in deployments
    ]
    found.sort(key=lambda w: (w.kind, w.name))
    names = {(w.kind, w.name) for w in found}
    for kind, required in REQUIRED:
        if (kind, required) not in names:
            problems.append(f"{kind} {namespace}/{required} does not exist")
    for w in found:
        if w.observed_generation < w.generation:
            problems.append(
                f"{w.kind} {namespace}/{w.name}: generation {w.generation} not yet observed by its controller"
            )
        elif not w.caught_up:
            problems.append(
                f"{w.kind} {namespace}/{w.name}: {w.desired} desired, {w.updated} updated, {w.ready} ready"
            )
        if (w.kind, w.name) == ("DaemonSet", AGENT_DAEMONSET) and w.desired != len(report):
            problems.append(
                f"DaemonSet {namespace}/{w.name} wants {w.desired} pods for {len(report)} nodes"
            )

    failing = sorted(filter(None, (_failing(pod, names) for pod in pods)))
    problems.extend(failing)
    if not report:
        problems.append("the cluster has no nodes")
    healthy = not problems and all(not n.missing for n in report)
    return Health(
        healthy=healthy, nodes=report, workloads=found, problems=problems, failing=failing
    )


class _Watcher(threading.Thread):
    """Puts a token on a queue whenever one resource changes; restarts its watch when it ends."""

    def __init__(
        self, cluster: Cluster, function, args, events: queue.Queue, stop: threading.Event
    ):
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
            except (
                urllib3.exceptions.HTTPError,
                OSError,
                ApiException,
                ValueError,
                AttributeError,
            ) as error:
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
    every: float = PROGRESS_EVERY,
) -> Health:
    """Re-judge on every change that the watches see, until healthy or ``timeout`` seconds pass;
    ``progress`` hears what is still missing at least every ``every`` seconds, and at each change."""
    start = clock()
    deadline = start + timeout
    health = snapshot(cluster, namespace)
    if health.healthy or health.failing or timeout <= 0:
        return health

    def say(health: Health) -> None:
        if progress:
            progress(f"{health.progress()} ({clock() - start:.0f}s of {timeout:g}s)")

    say(health)
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
        last, said = health.progress(), clock()
        while True:
            remaining = deadline - clock()
            if remaining <= 0:
                break
            try:
                events.get(timeout=min(remaining, max(said + every - clock(), 0.01)))
            except queue.Empty:
                if clock() >= deadline:
                    break
                # Quiet for a while: say again what is still missing, so a long wait is seen.
                say(health)
                said = clock()
                continue
            # One snapshot for a burst of events.
            while not events.empty():
                events.get_nowait()
            health = snapshot(cluster, namespace)
            if health.healthy or health.failing:
                return health
            if health.progress() != last or clock() - said >= every:
                last, said = health.progress(), clock()
                say(health)
        return snapshot(cluster, namespace)
    finally:
        stop.set()
        for watcher in watchers:
            watcher.watch.stop()  # closes its response, so the thread's read ends now
        for watcher in watchers:
            watcher.join(timeout=2)

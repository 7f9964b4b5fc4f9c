"""
Pods the old CNI left: they keep its addresses until they are recreated. A pod is the old CNI's
when Cilium does not manage it; which signal says so depends on the cluster.

Only pods that run on a pod network count: not ``hostNetwork``, an IP, not finished
(Succeeded/Failed pods stay as they are), not being deleted. Of those:

- No release of Cilium yet (``helm history`` knows none): every one is the old CNI's, so that a
  dry run before the install names exactly the pods the run will restart after it.
- A real data plane (Cilium's agents run and have registered the ``cilium.io`` resources): a pod
  is Cilium's when it has a CiliumEndpoint (same namespace and name, and the pod's IP among the
  endpoint's addresses, when it lists any), or when its IP is in the pod CIDRs of its node's
  CiliumNode (``spec.ipam.podCIDRs``), which Cilium hands its pods' addresses from. The CIDR
  alone is trusted only where those CIDRs overlap none of the Node's own ``spec.podCIDRs``: with
  ``ipam.mode=kubernetes`` Cilium takes its CIDRs from the Node, and the old bridge's host-local
  IPAM handed out the same ranges (LAB.md), so an address there says nothing about who gave it.
  There, and on a node without a CiliumNode, only the CiliumEndpoint counts.
- The kwok lab (no ``cilium.io`` resources: kwok plays the kubelets and no agent runs): a pod is
  Cilium's when it was created at or after the time Cilium's release was first deployed. That
  time is the first revision's ``updated`` in ``helm history``, or the creation of the agent
  DaemonSet when that is earlier (helm keeps only the last revisions, ``--history-max``).

Pods Cilium manages are never restarted, whatever changed in the release since.

After a rollback it goes the other way (:func:`find_after_rollback`): the old CNI runs again and
the pods Cilium addressed keep Cilium's addresses, on devices nothing serves any more, until they
are recreated. A pod is Cilium's there when its IP is outside its node's old pod CIDR: the range
the old bridge's host-local IPAM hands out, which is the inventory's ``pod_cidr`` of the node
(the guide's kube-controller-manager allocates no ``spec.podCIDRs``) or else the Node's own
``spec.podCIDRs``. A pod is Cilium's too when a CiliumEndpoint of the same name lists its IP:
``helm uninstall`` leaves Cilium's CRDs, and a pod's CiliumEndpoint goes only with the pod. With
``ipam.mode=kubernetes`` Cilium handed its pods addresses from the Node's own podCIDRs, the old
bridge's range: there the IP says nothing, and only a CiliumEndpoint tells (once Cilium's CRDs
are deleted, such pods cannot be told and are not restarted). A node with no known old range is
named, and its pods are judged by their CiliumEndpoints alone.

Of the pods to restart (the old CNI's on the way in, Cilium's on the way back), those a
ReplicaSet, StatefulSet, DaemonSet or ReplicationController recreates are evicted
(:func:`restart`, the Eviction API as ``kubectl drain`` uses it, so PodDisruptionBudgets hold);
a running Job's pod is left to finish (evicting it would start its work again); a static pod
(its mirror in the API) is its kubelet's to restart; a pod no controller recreates is listed.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import json
import time
from dataclasses import asdict, dataclass, field

from kubernetes import client
from kubernetes.client.rest import ApiException

from cilium_lab.cluster import ClusterError
from cilium_lab.cluster.helm_records import ReleaseRecords
from cilium_lab.cluster.kube import Cluster
from cilium_lab.cluster.verify import (
    AGENT_DAEMONSET,
    PROGRESS_EVERY,
    condition,
    lookup,
    name,
)

# Owners that recreate an evicted pod.
RECREATING_KINDS = frozenset(("ReplicaSet", "StatefulSet", "DaemonSet", "ReplicationController"))
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"

# What becomes of an old-CNI pod.
EVICT, JOB, STATIC, UNOWNED = "evict", "job", "static", "unowned"


@dataclass
class OldPod:
    namespace: str
    name: str
    node: str | None
    ip: str | None
    owner: str | None  # "Kind/name" of its controller, None without one
    reason: str  # why it is the old CNI's
    action: str = UNOWNED  # EVICT, JOB, STATIC or UNOWNED
    uid: str | None = None
    owner_uid: str | None = None
    # Whose address it has, for the advice: the old CNI's on the way in, Cilium's on the way back.
    whose: str = "the old CNI's"

    @property
    def restarts(self) -> bool:
        return self.action == EVICT

    def what(self) -> str:
        return f"{self.namespace}/{self.name} on {self.node}"

    def advice(self) -> str:
        """What the run does not do with it, and what the user can."""
        start = f"pod {self.what()} is {self.whose} ({self.reason})"
        if self.action == JOB:
            return (
                f"{start} and runs for {self.owner}: left to finish, not evicted (that would start "
                "its work again); the Job's next pods get "
                + ("Cilium's addresses" if self.whose == "the old CNI's" else "the old CNI's")
            )
        if self.action == STATIC:
            return (
                f"{start} and is a static pod of the kubelet on {self.node}, which alone can restart "
                f"it: on {self.node}, move its manifest out of the kubelet's staticPodPath "
                "directory (its config says which) and back"
            )
        return f"{start} and no controller recreates it: delete and recreate it yourself"


def _time(value: str | None) -> datetime.datetime | None:
    """An API or helm timestamp (RFC 3339) as an aware datetime."""
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _stamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _networks(cidrs) -> list:
    found = []
    for cidr in cidrs or ():
        try:
            found.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            continue
    return found


@dataclass
class Signals:
    """What tells Cilium's pods from the old CNI's (see the module's docstring)."""

    release: str  # "namespace/name", for the reasons
    # When the release was first deployed; None: there is no release.
    deployed: datetime.datetime | None
    # (namespace, name) -> the addresses of its CiliumEndpoint; None: no cilium.io resources.
    endpoints: dict[tuple[str, str], set[str]] | None = None
    # Node -> the CiliumNode's pod CIDRs, where an address in them may be trusted.
    cidrs: dict[str, list] = field(default_factory=dict)
    # Node -> why its CiliumNode's pod CIDRs say nothing.
    untrusted: dict[str, str] = field(default_factory=dict)

    def old(self, pod: dict) -> str | None:
        """Why ``pod`` is the old CNI's, or None when Cilium manages it."""
        if self.deployed is None:
            return f"no release {self.release} yet: its address is the old CNI's"
        if self.endpoints is None:
            created = _time(lookup(pod, "metadata", "creationTimestamp"))
            # creationTimestamp has whole seconds: a pod of the release's first second is Cilium's.
            first = self.deployed.replace(microsecond=0)
            if created is None or created >= first:
                return None
            return (
                f"created {_stamp(created)}, before the release {self.release} was first "
                f"deployed ({_stamp(self.deployed)})"
            )
        key = (lookup(pod, "metadata", "namespace"), name(pod))
        ip = ipaddress.ip_address(lookup(pod, "status", "podIP"))
        addresses = self.endpoints.get(key)
        if addresses is not None and (not addresses or str(ip) in addresses):
            return None
        node = lookup(pod, "spec", "nodeName")
        networks = self.cidrs.get(node, [])
        if any(ip in network for network in networks):
            return None
        if networks:
            why = (
                f"IP {ip} is outside Cilium's pod CIDRs on {node} ({', '.join(map(str, networks))})"
            )
        else:
            why = self.untrusted.get(node) or f"{node} has no CiliumNode with pod CIDRs"
        return f"no CiliumEndpoint, and {why}"


def _controller(pod: dict) -> dict | None:
    for ref in lookup(pod, "metadata", "ownerReferences", default=[]):
        if ref.get("controller"):
            return ref
    return None


def _old_pod(pod: dict, reason: str) -> OldPod:
    ref = _controller(pod) or {}
    kind = ref.get("kind")
    if MIRROR_ANNOTATION in lookup(pod, "metadata", "annotations", default={}) or kind == "Node":
        action = STATIC
    elif kind == "Job":
        action = JOB
    elif kind in RECREATING_KINDS:
        action = EVICT
    else:
        action = UNOWNED
    return OldPod(
        namespace=lookup(pod, "metadata", "namespace"),
        name=name(pod),
        node=lookup(pod, "spec", "nodeName"),
        ip=lookup(pod, "status", "podIP"),
        owner=f"{kind}/{ref.get('name')}" if kind else None,
        reason=reason,
        action=action,
        uid=lookup(pod, "metadata", "uid"),
        owner_uid=ref.get("uid"),
    )


def on_pod_network(pod: dict) -> bool:
    """Whether ``pod`` runs with an address of a pod network (the pods this module is about)."""
    status = pod.get("status") or {}
    return not (
        lookup(pod, "spec", "hostNetwork")
        or not status.get("podIP")
        or lookup(pod, "metadata", "deletionTimestamp")
        or status.get("phase") in ("Succeeded", "Failed")
    )


def classify(pods, signals: Signals) -> list[OldPod]:
    """The old CNI's pods among ``pods`` (the API's, as JSON), each with why and what becomes of it."""
    old = []
    for pod in pods:
        if not on_pod_network(pod):
            continue
        reason = signals.old(pod)
        if reason:
            old.append(_old_pod(pod, reason))
    return sorted(old, key=lambda p: (p.namespace, p.name))


# Reading the signals.


def first_deployed(records: ReleaseRecords) -> datetime.datetime | None:
    """When helm's history says the release was first deployed (its oldest revision); None when
    helm has no such release."""
    first = records.first_revision()
    return _time(first.get("updated")) if first else None


def _list(cluster: Cluster, path: str, what: str) -> list | None:
    """The items at ``path``; None when the API has no such resource (404)."""
    try:
        return cluster.get(path).get("items", [])
    except ApiException as error:
        if error.status == 404:
            return None
        raise ClusterError(
            f"listing {what} on {cluster.server} failed: {error.status} {error.reason}"
        ) from None


def endpoint_addresses(endpoints) -> dict[tuple[str, str], set[str]]:
    """(namespace, name) -> the IPs each CiliumEndpoint lists."""
    found = {}
    for endpoint in endpoints:
        addresses = set()
        for entry in lookup(endpoint, "status", "networking", "addressing", default=[]):
            addresses.update(v for k, v in entry.items() if k in ("ipv4", "ipv6") and v)
        found[(lookup(endpoint, "metadata", "namespace"), name(endpoint))] = addresses
    return found


def trusted_cidrs(ciliumnodes, nodes) -> tuple[dict[str, list], dict[str, str]]:
    """Per node, the CiliumNode's pod CIDRs an address may be trusted in, and, for the others,
    why not: where they overlap the Node's own podCIDRs (``ipam.mode=kubernetes``), the old
    bridge handed out the same addresses."""
    node_cidrs = {
        name(n): _networks(
            lookup(n, "spec", "podCIDRs", default=[]) or [lookup(n, "spec", "podCIDR")]
        )
        for n in nodes
    }
    trusted, untrusted = {}, {}
    for ciliumnode in ciliumnodes:
        node = name(ciliumnode)
        networks = _networks(lookup(ciliumnode, "spec", "ipam", "podCIDRs", default=[]))
        shared = [n for n in networks if any(n.overlaps(o) for o in node_cidrs.get(node, ()))]
        if shared:
            untrusted[node] = (
                f"Cilium's pod CIDRs on {node} ({', '.join(map(str, networks))}) are the Node's "
                "own (ipam.mode=kubernetes), which the old CNI used too: the IP cannot tell"
            )
        elif networks:
            trusted[node] = networks
    return trusted, untrusted


def signals(cluster: Cluster, records: ReleaseRecords) -> Signals:
    namespace = records.namespace
    deployed = first_deployed(records)
    found = Signals(records.where, deployed)
    if deployed is None:
        return found
    endpoints = _list(cluster, "/apis/cilium.io/v2/ciliumendpoints", "CiliumEndpoints")
    if endpoints is None:
        try:
            agents = cluster.get(
                f"/apis/apps/v1/namespaces/{namespace}/daemonsets/{AGENT_DAEMONSET}"
            )
            created = _time(lookup(agents, "metadata", "creationTimestamp"))
        except ApiException as error:
            if error.status != 404:
                raise ClusterError(
                    f"reading DaemonSet {namespace}/{AGENT_DAEMONSET} on {cluster.server} failed: "
                    f"{error.status} {error.reason}"
                ) from None
            created = None
        found.deployed = min(filter(None, (deployed, created)))
        return found
    found.endpoints = endpoint_addresses(endpoints)
    ciliumnodes = _list(cluster, "/apis/cilium.io/v2/ciliumnodes", "CiliumNodes") or []
    found.cidrs, found.untrusted = trusted_cidrs(ciliumnodes, cluster.get("/api/v1/nodes")["items"])
    return found


# After a rollback: the pods Cilium addressed.

CILIUM = "Cilium's"


def old_ranges(nodes, pod_cidrs: dict[str, str] | None = None) -> dict[str, list]:
    """Node -> the old bridge's pod CIDRs: ``pod_cidrs`` (the inventory's, by node name) where it
    names the node, else the Node's own ``spec.podCIDRs`` (``spec.podCIDR``); nodes with
    neither are left out."""
    given = pod_cidrs or {}
    ranges = {}
    for node in nodes:
        node_name = name(node)
        networks = _networks([given[node_name]] if node_name in given else None) or _networks(
            lookup(node, "spec", "podCIDRs", default=[]) or [lookup(node, "spec", "podCIDR")]
        )
        if networks:
            ranges[node_name] = networks
    return ranges


def classify_after_rollback(
    pods, ranges: dict[str, list], endpoints: dict[tuple[str, str], set[str]] | None = None
) -> list[OldPod]:
    """The pods among ``pods`` (the API's, as JSON) that Cilium addressed (see the module's
    docstring): an IP outside the node's old ``ranges``, or a CiliumEndpoint listing it."""
    found = []
    for pod in pods:
        if not on_pod_network(pod):
            continue
        ip = ipaddress.ip_address(lookup(pod, "status", "podIP"))
        node = lookup(pod, "spec", "nodeName")
        key = (lookup(pod, "metadata", "namespace"), name(pod))
        networks = ranges.get(node)
        if networks and not any(ip in network for network in networks):
            reason = (
                f"IP {ip} is outside the old CNI's pod CIDR on {node} "
                f"({', '.join(map(str, networks))})"
            )
        elif endpoints is not None and str(ip) in endpoints.get(key, ()):
            reason = f"its CiliumEndpoint lists its IP {ip}"
        else:
            continue
        found.append(dataclasses.replace(_old_pod(pod, reason), whose=CILIUM))
    return sorted(found, key=lambda p: (p.namespace, p.name))


def find_after_rollback(
    cluster: Cluster, pod_cidrs: dict[str, str] | None = None
) -> tuple[list[OldPod], list[str]]:
    """The pods Cilium addressed, once it is gone, and the nodes whose old range is not known
    (their pods are judged by their CiliumEndpoints alone)."""
    nodes = cluster.get("/api/v1/nodes")["items"]
    unknown = sorted(set(pod_cidrs or {}) - {name(n) for n in nodes})
    if unknown:
        raise ClusterError(
            f"no node {', '.join(unknown)} on {cluster.server} (given a pod CIDR): name the "
            "cluster's nodes"
        )
    ranges = old_ranges(nodes, pod_cidrs)
    endpoints = _list(cluster, "/apis/cilium.io/v2/ciliumendpoints", "CiliumEndpoints")
    unranged = sorted(name(n) for n in nodes if name(n) not in ranges)
    pods = cluster.get("/api/v1/pods")["items"]
    return (
        classify_after_rollback(
            pods, ranges, endpoint_addresses(endpoints) if endpoints is not None else None
        ),
        unranged,
    )


def find(cluster: Cluster, records: ReleaseRecords) -> list[OldPod]:
    found = signals(cluster, records)
    return classify(cluster.get("/api/v1/pods")["items"], found)


def _as_dict(pod: OldPod) -> dict:
    # ``whose`` only words the advice; the JSON stays as the migration's restart reports it.
    found = asdict(pod)
    del found["whose"]
    return found


def as_dicts(pods: list[OldPod]) -> list[dict]:
    return [_as_dict(p) for p in pods]


def split(pods: list[OldPod]) -> dict:
    """The JSON the pods check reports: ``restart`` (evicted by a run), and ``left``, each with
    its ``advice`` (the deploy says it as it is)."""
    return {
        "restart": as_dicts([p for p in pods if p.restarts]),
        "left": [dict(_as_dict(p), advice=p.advice()) for p in pods if not p.restarts],
    }


# Restarting: evictions, one pod of each controller at a time.


class NotRestarted(Exception):
    """The restart stopped: a budget or a replacement did not come in time; the message says
    which, and which pods were restarted before."""


def selects(selector: dict | None, labels: dict) -> bool:
    """Whether a label selector (``matchLabels``, ``matchExpressions``) selects ``labels``."""
    if not selector:
        return False  # policy/v1: an empty selector of a budget selects nothing
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def budget_text(budget: dict) -> str:
    """A PodDisruptionBudget, named with what it allows now."""
    spec, status = budget.get("spec") or {}, budget.get("status") or {}
    rule = (
        f"minAvailable {spec['minAvailable']}"
        if spec.get("minAvailable") is not None
        else f"maxUnavailable {spec.get('maxUnavailable')}"
    )
    return (
        f"PodDisruptionBudget {lookup(budget, 'metadata', 'namespace')}/{name(budget)} ({rule}: "
        f"{status.get('currentHealthy', '?')} healthy, {status.get('desiredHealthy', '?')} needed, "
        f"{status.get('disruptionsAllowed', 0)} disruptions allowed)"
    )


@dataclass
class _Step:
    """One controller's pods, evicted in turn."""

    pods: list[OldPod]
    evicted: OldPod | None = None  # the pod whose replacement is awaited
    ready_before: int = 0
    since: float | None = None  # when the current wait (a budget, a replacement) began
    budget: str | None = None  # the budget that refused the last eviction, named


def _ready(pod: dict) -> bool:
    return condition(pod, "Ready") == "True" and not lookup(pod, "metadata", "deletionTimestamp")


class Restart:
    """Evict the old CNI's pods that a controller recreates (:func:`restart`)."""

    def __init__(
        self,
        cluster: Cluster,
        pods: list[OldPod],
        timeout: float,
        progress=None,
        clock=time.monotonic,
        sleep=time.sleep,
        poll: float = 1.0,
        every: float = PROGRESS_EVERY,
        unserved: bool = False,
    ):
        self.cluster, self.timeout, self.progress = cluster, timeout, progress
        self.clock, self.sleep, self.poll, self.every = clock, sleep, poll, every
        steps: dict[tuple, _Step] = {}
        for pod in pods:
            if pod.restarts:
                key = (pod.namespace, pod.owner, pod.owner_uid)
                steps.setdefault(key, _Step([])).pods.append(pod)
        self.steps = list(steps.values())
        # After a rollback the pods to restart have lost their network (Cilium's devices are
        # gone), and their readiness follows it a few probes later: counted, a replacement would
        # be awaited in place of a pod that turned unready meanwhile, for ever. Then none of them
        # counts, and each eviction waits for one more Ready pod of the others.
        self.unserved = unserved
        self.done: list[OldPod] = []

    def run(self) -> list[OldPod]:
        said = self.clock()
        while any(step.pods or step.evicted for step in self.steps):
            live = {(lookup(p, "metadata", "namespace"), name(p)): p for p in self._pods()}
            for step in self.steps:
                if step.evicted:
                    self._await_replacement(step, live)
                if not step.evicted and step.pods:
                    self._evict_next(step, live)
            if not any(step.pods or step.evicted for step in self.steps):
                break
            if self.progress and self.clock() - said >= self.every:
                said = self.clock()
                for line in self._waiting():
                    self.progress(line)
            self.sleep(self.poll)
        return self.done

    def _pods(self) -> list[dict]:
        namespaces = sorted({p.namespace for s in self.steps for p in s.pods + [s.evicted] if p})
        return [
            pod
            for namespace in namespaces
            for pod in self.cluster.get(f"/api/v1/namespaces/{namespace}/pods")["items"]
        ]

    def _owned_ready(self, step: _Step, live: dict, without: str | None = None) -> int:
        pod = step.evicted or step.pods[0]
        left_out = {without}
        if self.unserved:
            left_out |= {p.uid for p in step.pods} | {pod.uid}
        return sum(
            1
            for p in live.values()
            if lookup(p, "metadata", "namespace") == pod.namespace
            and (_controller(p) or {}).get("uid") == pod.owner_uid
            and lookup(p, "metadata", "uid") not in left_out
            and _ready(p)
        )

    def _evict_next(self, step: _Step, live: dict) -> None:
        pod = step.pods[0]
        ready_before = self._owned_ready(step, live) + (1 if self.unserved else 0)
        current = live.get((pod.namespace, pod.name))
        if current is not None and lookup(current, "metadata", "uid") != pod.uid:
            current = None  # a StatefulSet's new pod of the same name: the old one is gone
        if current is not None:
            try:
                if not self.cluster.call(self._evict, pod):
                    step.pods.pop(0)  # its namespace is going, and the pod with it
                    return
            except ApiException as error:
                if error.status == 429:
                    self._refused(step, pod, current)
                    return
                if error.status != 404:
                    raise ClusterError(
                        f"evicting pod {pod.what()} on {self.cluster.server} failed: "
                        f"{error.status} {_message(error)}"
                    ) from None
        step.pods.pop(0)
        step.evicted, step.ready_before = pod, ready_before
        step.since, step.budget = self.clock(), None
        if self.progress:
            self.progress(f"evicted pod {pod.what()} ({pod.owner} recreates it)")

    def _evict(self, pod: OldPod, _request_timeout=None) -> bool:
        """Evict ``pod``; False when its namespace is being deleted (no eviction is taken there)."""
        body = client.V1Eviction(
            metadata=client.V1ObjectMeta(name=pod.name, namespace=pod.namespace)
        )
        try:
            self.cluster.core.create_namespaced_pod_eviction(
                pod.name, pod.namespace, body, _request_timeout=_request_timeout
            )
        except ApiException as error:
            if error.status == 403 and "NamespaceTerminating" in str(error.body):
                return False
            raise
        return True

    def _refused(self, step: _Step, pod: OldPod, current: dict) -> None:
        """The budget allows no eviction now: wait, until the timeout."""
        if step.since is None:
            step.since = self.clock()
        step.budget = self._budget(current) or "the API server (429, no budget of the pod found)"
        waited = self.clock() - step.since
        if waited >= self.timeout:
            raise NotRestarted(
                f"pod {pod.what()} ({pod.owner}) could not be evicted in {self.timeout:g}s: "
                f"{step.budget} allows no eviction; {self._so_far()}make room in the budget "
                "(more replicas, or a looser budget) and run again"
            )

    def _budget(self, pod: dict) -> str | None:
        """The budgets that select ``pod`` (as JSON), named with what they allow now."""
        labels = lookup(pod, "metadata", "labels", default={})
        namespace = lookup(pod, "metadata", "namespace")
        try:
            budgets = self.cluster.get(
                f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets"
            )["items"]
        except ApiException:
            return None
        matching = [
            budget_text(b) for b in budgets if selects(lookup(b, "spec", "selector"), labels)
        ]
        return ", ".join(matching) or None

    def _await_replacement(self, step: _Step, live: dict) -> None:
        pod = step.evicted
        if self._owned_ready(step, live, without=pod.uid) >= step.ready_before:
            self.done.append(pod)
            step.evicted, step.since = None, None
            return
        if self.clock() - step.since >= self.timeout:
            raise NotRestarted(
                f"{pod.owner} in {pod.namespace} has not made a Ready replacement of the evicted "
                f"pod {pod.name} in {self.timeout:g}s ({self._owned_ready(step, live, pod.uid)} of "
                f"{step.ready_before} ready); {self._so_far()}see why with its events, then run again"
            )

    def _so_far(self) -> str:
        if not self.done:
            return "no pod was restarted before; "
        return f"restarted before: {', '.join(f'{p.namespace}/{p.name}' for p in self.done)}; "

    def _waiting(self) -> list[str]:
        lines = []
        for step in self.steps:
            if step.since is None:
                continue
            waited = f"{self.clock() - step.since:.0f}s of {self.timeout:g}s"
            if step.evicted:
                lines.append(
                    f"waiting for {step.evicted.owner} in {step.evicted.namespace} to make a Ready "
                    f"replacement of {step.evicted.name} ({waited})"
                )
            elif step.budget:
                lines.append(
                    f"waiting for {step.budget} to allow the eviction of pod "
                    f"{step.pods[0].what()} ({step.pods[0].owner}) ({waited})"
                )
        return lines


def _message(error: ApiException) -> str:
    try:
        return json.loads(error.body).get("message") or error.reason
    except (TypeError, ValueError, AttributeError):
        return error.reason


def restart(cluster: Cluster, pods: list[OldPod], timeout: float, progress=None, **options):
    """Evict the pods a controller recreates (``restarts``), one of each controller at a time,
    each after the Ready replacement of the one before; a budget that refuses (429) is waited
    on. Returns those restarted; raises :class:`NotRestarted` when one wait passes ``timeout``
    seconds. Other pods are never touched."""
    return Restart(cluster, pods, timeout, progress, **options).run()

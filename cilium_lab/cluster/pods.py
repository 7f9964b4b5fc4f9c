"""
Pods started under the old CNI: they keep their old addresses until they are recreated.

A pod is from the old CNI when it is not on ``hostNetwork``, has an IP, and that IP is outside
the pod CIDRs Cilium manages on its node, or it started before the (ready) Cilium agent on its
node started, or no agent is ready on its node yet (so a dry run before the install names the
pods the install will leave with old addresses). Pods owned by a controller come back when
deleted; others are only listed.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import asdict, dataclass

from kubernetes.client.rest import ApiException

from cilium_lab.cluster import ClusterError
from cilium_lab.cluster.kube import Cluster
from cilium_lab.cluster.verify import AGENT_SELECTOR, condition, labels_match, lookup, name

# Owners that recreate a deleted pod. A mirror pod's owner (a Node) does not.
CONTROLLER_KINDS = frozenset(
    (
        "ReplicaSet",
        "StatefulSet",
        "DaemonSet",
        "Job",
        "Deployment",
        "ReplicationController",
        "CronJob",
    )
)


@dataclass
class OldPod:
    namespace: str
    name: str
    node: str | None
    ip: str | None
    owner: str | None  # "Kind/name" of the controller, None when nothing recreates it
    reason: str

    @property
    def owned(self) -> bool:
        return self.owner is not None


def _controller(pod: dict) -> str | None:
    for ref in lookup(pod, "metadata", "ownerReferences", default=[]):
        if ref.get("controller") and ref.get("kind") in CONTROLLER_KINDS:
            return f"{ref['kind']}/{ref.get('name')}"
    return None


def _time(value: str | None) -> datetime.datetime | None:
    """An API timestamp (RFC 3339, ``...Z``) as an aware datetime."""
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def cilium_cidrs(cluster: Cluster) -> dict[str, list]:
    """Pod CIDRs per node from CiliumNode objects; empty when Cilium has not made any."""
    try:
        result = cluster.get("/apis/cilium.io/v2/ciliumnodes")
    except ApiException as error:
        if error.status == 404:
            return {}
        raise ClusterError(
            f"listing CiliumNodes on {cluster.server} failed: {error.status} {error.reason}"
        ) from None
    cidrs: dict[str, list] = {}
    for item in result.get("items", []):
        node = name(item)
        pod_cidrs = lookup(item, "spec", "ipam", "podCIDRs", default=[])
        networks = []
        for cidr in pod_cidrs:
            try:
                networks.append(ipaddress.ip_network(cidr, strict=False))
            except ValueError:
                continue
        if node and networks:
            cidrs[node] = networks
    return cidrs


def _agent_start_times(pods, namespace: str) -> dict[str, object]:
    """When the ready agent on each node started. Its start, not its last turn to Ready: an agent
    that was NotReady a while (its node away) does not make the pods Cilium gave addresses old."""
    times = {}
    for pod in pods:
        node = lookup(pod, "spec", "nodeName")
        if (
            lookup(pod, "metadata", "namespace") != namespace
            or not labels_match(pod, AGENT_SELECTOR)
            or not node
        ):
            continue
        started = _time(lookup(pod, "status", "startTime"))
        if condition(pod, "Ready") == "True" and started:
            times[node] = started
    return times


def classify(
    pods, cidrs: dict[str, list], namespace: str = "kube-system", extra_cidrs=()
) -> list[OldPod]:
    """The pods from the old CNI among ``pods`` (every namespace's), with why each is one; the
    agents are the ``k8s-app=cilium`` pods of Cilium's ``namespace``."""
    started_at = _agent_start_times(pods, namespace)
    extra = [ipaddress.ip_network(c, strict=False) for c in extra_cidrs]
    old: list[OldPod] = []
    for pod in pods:
        status = pod.get("status") or {}
        if lookup(pod, "spec", "hostNetwork") or not status.get("podIP"):
            continue
        if lookup(pod, "metadata", "deletionTimestamp") or status.get("phase") in (
            "Succeeded",
            "Failed",
        ):
            continue
        node = lookup(pod, "spec", "nodeName")
        started = _time(status.get("startTime"))
        reason = None
        managed = cidrs.get(node, []) + extra
        ip = ipaddress.ip_address(status["podIP"])
        if managed and not any(ip in network for network in managed):
            reason = f"IP {ip} is outside Cilium's pod CIDRs {', '.join(map(str, managed))}"
        elif node in started_at and started and started < started_at[node]:
            reason = f"started {started:%Y-%m-%dT%H:%M:%SZ}, before the Cilium agent on {node}"
        elif node not in started_at:
            reason = f"no Cilium agent is ready on {node} yet: its address is the old CNI's"
        if reason:
            old.append(
                OldPod(
                    lookup(pod, "metadata", "namespace"),
                    name(pod),
                    node,
                    str(ip),
                    _controller(pod),
                    reason,
                )
            )
    return sorted(old, key=lambda p: (p.namespace, p.name))


def find(cluster: Cluster, namespace: str = "kube-system", extra_cidrs=()) -> list[OldPod]:
    pods = cluster.get("/api/v1/pods")["items"]
    return classify(pods, cilium_cidrs(cluster), namespace, extra_cidrs)


def delete(cluster: Cluster, pods: list[OldPod]) -> list[OldPod]:
    """Delete the owned ones; return those deleted. Unowned pods are never deleted."""
    deleted = []
    for pod in pods:
        if not pod.owned:
            continue
        try:
            cluster.call(cluster.core.delete_namespaced_pod, pod.name, pod.namespace)
        except ApiException as error:
            if error.status != 404:
                raise ClusterError(
                    f"deleting pod {pod.namespace}/{pod.name} on {cluster.server} failed: "
                    f"{error.status} {error.reason}"
                ) from None
        deleted.append(pod)
    return deleted


def as_dicts(pods: list[OldPod]) -> list[dict]:
    return [dict(asdict(p), owned=p.owned) for p in pods]

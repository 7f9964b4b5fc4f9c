"""pods.classify and pods.cilium_cidrs: the API's pods and CiliumNodes as JSON in, the pods from
the old CNI (and whether a controller recreates them) out. No API server."""

from __future__ import annotations

import ipaddress

import pytest
from kubernetes.client.rest import ApiException

from cilium_lab.cluster import ClusterError, pods

AGENT_START = "2026-11-26T11:40:00Z"
BEFORE, AFTER = "2026-11-26T11:38:38Z", "2026-11-26T11:45:00Z"


def pod(
    name, node="worker0", ip="10.4.0.7", start=BEFORE, namespace="default", owner=None, **extra
):
    obj = {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"nodeName": node},
        "status": {"phase": "Running", "podIP": ip, "startTime": start},
    }
    if owner:
        kind, _, owner_name = owner.partition("/")
        obj["metadata"]["ownerReferences"] = [
            {"kind": kind, "name": owner_name, "controller": True}
        ]
    for key, value in extra.items():
        section, _, field = key.partition("__")
        obj[section][field] = value
    return obj


def agent(node="worker0", ready=True, start=AGENT_START, namespace="kube-system"):
    obj = pod(f"cilium-{node}", node=node, ip="192.168.1.14", start=start, namespace=namespace)
    obj["metadata"]["labels"] = {"k8s-app": "cilium"}
    obj["spec"]["hostNetwork"] = True
    obj["status"]["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
    return obj


def cidrs(**by_node):
    return {n: [ipaddress.ip_network(c) for c in cs] for n, cs in by_node.items()}


def test_started_before_the_agent_is_old_and_its_controller_recreates_it():
    found = pods.classify(
        [
            agent(),
            pod("web-1", owner="ReplicaSet/web"),
            pod("web-2", start=AFTER, owner="ReplicaSet/web"),
        ],
        cidrs(worker0=["10.4.0.0/16"]),
    )
    assert pods.as_dicts(found) == [
        {
            "namespace": "default",
            "name": "web-1",
            "node": "worker0",
            "ip": "10.4.0.7",
            "owner": "ReplicaSet/web",
            "reason": f"started {BEFORE}, before the Cilium agent on worker0",
            "owned": True,
        }
    ]


def test_an_ip_outside_ciliums_cidrs_is_old_even_if_started_later():
    found = pods.classify(
        [agent(), pod("late", ip="10.244.1.5", start=AFTER)], cidrs(worker0=["10.4.0.0/16"])
    )
    assert [(p.name, p.reason, p.owned) for p in found] == [
        ("late", "IP 10.244.1.5 is outside Cilium's pod CIDRs 10.4.0.0/16", False)
    ]


def test_extra_cidrs_count_as_ciliums():
    found = pods.classify(
        [agent(), pod("late", ip="10.244.1.5", start=AFTER)],
        cidrs(worker0=["10.4.0.0/16"]),
        extra_cidrs=["10.244.0.0/16"],
    )
    assert found == []


def test_no_ready_agent_on_the_node_makes_its_pods_old():
    """Before the install (a dry run), or while the agent starts: the addresses are the old CNI's."""
    found = pods.classify(
        [agent(ready=False), pod("web-1", start=AFTER, owner="ReplicaSet/web")], {}
    )
    assert [p.reason for p in found] == [
        "no Cilium agent is ready on worker0 yet: its address is the old CNI's"
    ]


def test_only_the_agents_of_ciliums_namespace_count():
    found = pods.classify([agent(namespace="other"), pod("web-1", start=AFTER)], {}, "kube-system")
    assert [p.name for p in found] == ["web-1"]
    assert pods.classify([agent(namespace="other"), pod("web-1", start=AFTER)], {}, "other") == []


@pytest.mark.parametrize(
    "skipped",
    [
        pod("host", spec__hostNetwork=True),
        pod("no-ip", ip=None),
        pod("done", status__phase="Succeeded"),
        pod("failed", status__phase="Failed"),
        pod("going", metadata__deletionTimestamp="2026-11-26T12:00:00Z"),
    ],
    ids=lambda p: p["metadata"]["name"],
)
def test_pods_without_an_old_address_to_keep_are_left_out(skipped):
    assert pods.classify([agent(), skipped], {}) == []


@pytest.mark.parametrize(
    ("owners", "owner"),
    [
        ([{"kind": "ReplicaSet", "name": "web", "controller": True}], "ReplicaSet/web"),
        ([{"kind": "StatefulSet", "name": "db", "controller": True}], "StatefulSet/db"),
        # A mirror pod's owner is its Node, which recreates nothing.
        ([{"kind": "Node", "name": "worker0", "controller": True}], None),
        # Only the controlling reference counts.
        ([{"kind": "ReplicaSet", "name": "web", "controller": False}], None),
        ([], None),
    ],
)
def test_owned_means_a_controller_recreates_it(owners, owner):
    old = pod("p")
    old["metadata"]["ownerReferences"] = owners
    assert [p.owner for p in pods.classify([agent(), old], {})] == [owner]


def test_old_pods_are_sorted_by_namespace_then_name():
    found = pods.classify(
        [agent(), pod("b"), pod("a"), pod("coredns", namespace="kube-system")], {}
    )
    assert [(p.namespace, p.name) for p in found] == [
        ("default", "a"),
        ("default", "b"),
        ("kube-system", "coredns"),
    ]


class FakeCluster:
    server = "https://kubernetes:6443"

    def __init__(self, answer):
        self.answer = answer

    def get(self, path, **query):
        assert path == "/apis/cilium.io/v2/ciliumnodes"
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_cilium_cidrs_come_from_the_ciliumnodes():
    answer = {
        "items": [
            {
                "metadata": {"name": "worker0"},
                "spec": {"ipam": {"podCIDRs": ["10.0.1.0/24", "bad"]}},
            },
            {"metadata": {"name": "worker1"}, "spec": {"ipam": {}}},
        ]
    }
    assert pods.cilium_cidrs(FakeCluster(answer)) == {
        "worker0": [ipaddress.ip_network("10.0.1.0/24")]
    }


def test_without_ciliums_crd_there_are_no_cilium_cidrs():
    assert pods.cilium_cidrs(FakeCluster(ApiException(status=404, reason="Not Found"))) == {}
    with pytest.raises(
        ClusterError, match="listing CiliumNodes on https://kubernetes:6443 failed: 500"
    ):
        pods.cilium_cidrs(FakeCluster(ApiException(status=500, reason="Internal Server Error")))

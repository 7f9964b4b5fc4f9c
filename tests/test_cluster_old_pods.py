"""pods: the API's pods, CiliumEndpoints, CiliumNodes, Nodes and helm's records as JSON in, the
pods the old CNI left (and what becomes of each) out; the restart's evictions against a fake
API server that plays the controllers. No API server."""

from __future__ import annotations

import datetime
import json

import pytest
from helm_record_items import listing, record
from kubernetes.client.rest import ApiException

from cilium_lab.cluster import ClusterError, pods
from cilium_lab.cluster.helm_records import ReleaseRecords

DEPLOYED = "2026-11-26T11:40:00.123456789+01:00"  # helm's format: local time, nanoseconds
FIRST = datetime.datetime(2026, 11, 26, 10, 40, 0, 123456, tzinfo=datetime.UTC)
BEFORE, AFTER = "2026-11-26T10:38:38Z", "2026-11-26T10:45:00Z"
SAME_SECOND = "2026-11-26T10:40:00Z"


def pod(
    name,
    node="worker0",
    ip="10.4.0.7",
    created=BEFORE,
    namespace="default",
    owner=None,
    uid=None,
    **extra,
):
    obj = {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": created,
            "uid": uid or f"uid-{name}",
        },
        "spec": {"nodeName": node},
        "status": {"phase": "Running", "podIP": ip},
    }
    if owner:
        kind, _, owner_name = owner.partition("/")
        obj["metadata"]["ownerReferences"] = [
            {"kind": kind, "name": owner_name, "controller": True, "uid": f"uid-{owner_name}"}
        ]
    for key, value in extra.items():
        section, _, name_ = key.partition("__")
        obj[section][name_] = value
    return obj


def kwok_lab(deployed=FIRST):
    return pods.Signals("kube-system/cilium", deployed)


def real(endpoints=(), ciliumnodes=(), nodes=()):
    found = pods.Signals("kube-system/cilium", FIRST)
    found.endpoints = pods.endpoint_addresses(endpoints)
    found.cidrs, found.untrusted = pods.trusted_cidrs(ciliumnodes, nodes)
    return found


def endpoint(name, ips=("10.0.1.5",), namespace="default"):
    return {
        "metadata": {"name": name, "namespace": namespace},
        "status": {"networking": {"addressing": [{"ipv4": ip} for ip in ips]}},
    }


def ciliumnode(node, *cidrs):
    return {"metadata": {"name": node}, "spec": {"ipam": {"podCIDRs": list(cidrs)}}}


def node(name, *cidrs):
    return {"metadata": {"name": name}, "spec": {"podCIDR": cidrs[0], "podCIDRs": list(cidrs)}}


def names(found):
    return [(p.namespace, p.name) for p in found]


# Which signal, where.


def test_no_release_yet_makes_every_pod_on_a_pod_network_the_old_cnis():
    """Before the install (what --dry reads then): the pods the run will restart after it."""
    found = pods.classify(
        [pod("web-1", owner="ReplicaSet/web", created=AFTER), pod("bare")],
        pods.Signals("kube-system/cilium", None),
    )
    assert names(found) == [("default", "bare"), ("default", "web-1")]
    assert {p.reason for p in found} == {
        "no release kube-system/cilium yet: its address is the old CNI's"
    }


def test_kwok_lab_pods_created_before_the_first_deploy_are_the_old_cnis():
    found = pods.classify(
        [
            pod("old", owner="ReplicaSet/web"),
            pod("new", created=AFTER, owner="ReplicaSet/web"),
            # creationTimestamp has whole seconds: the release's first second is Cilium's.
            pod("same-second", created=SAME_SECOND),
        ],
        kwok_lab(),
    )
    assert pods.as_dicts(found) == [
        {
            "namespace": "default",
            "name": "old",
            "node": "worker0",
            "ip": "10.4.0.7",
            "owner": "ReplicaSet/web",
            "reason": "created 2026-11-26T10:38:38Z, before the release kube-system/cilium was "
            "first deployed (2026-11-26T10:40:00Z)",
            "action": "evict",
            "uid": "uid-old",
            "owner_uid": "uid-web",
        }
    ]


def test_the_first_revision_of_helms_history_dates_the_release():
    """Upgrades after it (a values change, a chart bump) do not move the date."""
    history = listing(
        record(2, updated="2026-11-27T09:00:00.5+01:00"),
        record(1, status="superseded", updated=DEPLOYED, version="1.19.5"),
    )
    assert pods.first_deployed(records_of(FakeApi({SECRETS: history}))) == FIRST
    assert pods.first_deployed(records_of(FakeApi({SECRETS: listing()}))) is None


def test_a_pod_cilium_manages_is_never_old_whatever_changed_since():
    """A values change makes a revision after the pod was created: it stays Cilium's."""
    assert pods.classify([pod("web-new", created=AFTER)], kwok_lab(FIRST)) == []


def test_a_ciliumendpoint_makes_a_pod_ciliums_whatever_its_address():
    found = pods.classify(
        [pod("with-endpoint", ip="10.0.1.5"), pod("without", ip="10.0.1.6")],
        real(endpoints=[endpoint("with-endpoint")]),
    )
    assert names(found) == [("default", "without")]
    assert found[0].reason == "no CiliumEndpoint, and worker0 has no CiliumNode with pod CIDRs"


def test_an_endpoint_of_another_address_is_a_stale_one():
    found = pods.classify(
        [pod("db-0", ip="10.4.0.9")], real(endpoints=[endpoint("db-0", ips=["10.0.1.5"])])
    )
    assert names(found) == [("default", "db-0")]


def test_an_address_in_the_ciliumnodes_own_cidrs_is_ciliums_without_an_endpoint():
    """Cluster-pool IPAM: the operator hands each node a CIDR of Cilium's, apart from the bridge's."""
    signals = real(
        ciliumnodes=[ciliumnode("worker0", "10.0.1.0/24")], nodes=[node("worker0", "10.4.0.0/16")]
    )
    found = pods.classify([pod("new", ip="10.0.1.9"), pod("old", ip="10.4.0.7")], signals)
    assert [(p.name, p.reason) for p in found] == [
        (
            "old",
            "no CiliumEndpoint, and IP 10.4.0.7 is outside Cilium's pod CIDRs on worker0 (10.0.1.0/24)",
        )
    ]


def test_with_ipam_kubernetes_the_address_says_nothing():
    """ipam.mode=kubernetes: Cilium's CIDRs are the Node's, which the old bridge used too."""
    signals = real(
        endpoints=[endpoint("new", ips=["10.4.0.9"])],
        ciliumnodes=[ciliumnode("worker0", "10.4.0.0/16")],
        nodes=[node("worker0", "10.4.0.0/16")],
    )
    found = pods.classify([pod("new", ip="10.4.0.9"), pod("old", ip="10.4.0.7")], signals)
    assert [(p.name, p.reason) for p in found] == [
        (
            "old",
            "no CiliumEndpoint, and Cilium's pod CIDRs on worker0 (10.4.0.0/16) are the Node's "
            "own (ipam.mode=kubernetes), which the old CNI used too: the IP cannot tell",
        )
    ]


def test_overlapping_not_only_equal_cidrs_are_distrusted():
    trusted, untrusted = pods.trusted_cidrs(
        [ciliumnode("worker0", "10.4.3.0/24"), ciliumnode("worker1", "10.0.2.0/24", "bad")],
        [node("worker0", "10.4.0.0/16"), node("worker1", "10.5.0.0/16")],
    )
    assert list(untrusted) == ["worker0"]
    assert {n: list(map(str, c)) for n, c in trusted.items()} == {"worker1": ["10.0.2.0/24"]}


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
def test_pods_without_an_address_of_a_pod_network_are_left_out(skipped):
    assert pods.classify([skipped], pods.Signals("kube-system/cilium", None)) == []


# What becomes of each.


def mirror(name="kube-apiserver-control0"):
    obj = pod(name, node="control0", owner="Node/control0", namespace="kube-system")
    obj["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "abc"}
    return obj


@pytest.mark.parametrize(
    ("old", "action", "owner"),
    [
        (pod("web-1", owner="ReplicaSet/web"), "evict", "ReplicaSet/web"),
        (pod("db-0", owner="StatefulSet/db"), "evict", "StatefulSet/db"),
        (pod("agent-x", owner="DaemonSet/agent"), "evict", "DaemonSet/agent"),
        (pod("rc-x", owner="ReplicationController/rc"), "evict", "ReplicationController/rc"),
        (pod("once-x", owner="Job/once"), "job", "Job/once"),
        (mirror(), "static", "Node/control0"),
        (pod("bare"), "unowned", None),
    ],
    ids=lambda v: v["metadata"]["name"] if isinstance(v, dict) else None,
)
def test_only_pods_a_controller_recreates_are_restarted(old, action, owner):
    (found,) = pods.classify([old], kwok_lab())
    assert (found.action, found.owner, found.restarts) == (action, owner, action == "evict")


def test_a_reference_that_is_not_the_controller_does_not_count():
    old = pod("p")
    old["metadata"]["ownerReferences"] = [
        {"kind": "ReplicaSet", "name": "web", "controller": False}
    ]
    assert pods.classify([old], kwok_lab())[0].action == "unowned"


def test_the_advice_for_what_is_left():
    by_name = {
        p.name: p.advice()
        for p in pods.classify([pod("once-x", owner="Job/once"), mirror(), pod("bare")], kwok_lab())
    }
    assert by_name["once-x"].startswith("pod default/once-x on worker0 is the old CNI's (created")
    assert "runs for Job/once: left to finish, not evicted" in by_name["once-x"]
    assert (
        "is a static pod of the kubelet on control0, which alone can restart it: on control0, "
        "move its manifest out of the kubelet's staticPodPath directory"
    ) in by_name["kube-apiserver-control0"]
    assert "recreate it yourself" not in by_name["kube-apiserver-control0"]
    assert by_name["bare"].endswith("no controller recreates it: delete and recreate it yourself")


def test_the_report_splits_restarted_from_left_with_advice():
    report = pods.split(
        pods.classify([pod("web-1", owner="ReplicaSet/web"), pod("bare")], kwok_lab())
    )
    assert [p["name"] for p in report["restart"]] == ["web-1"]
    assert [p["name"] for p in report["left"]] == ["bare"]
    assert report["left"][0]["advice"].endswith("delete and recreate it yourself")
    assert "advice" not in report["restart"][0]


# Reading the signals from the API and helm.


class FakeApi:
    server = "https://kubernetes:6443"

    def __init__(self, answers):
        self.answers, self.paths = answers, []

    def get(self, path, **query):
        self.paths.append(path)
        answer = self.answers.get(path, ApiException(status=404, reason="Not Found"))
        if isinstance(answer, Exception):
            raise answer
        return answer


SECRETS = "/api/v1/namespaces/kube-system/secrets"


def records_of(api):
    return ReleaseRecords(api, None, "cilium", "kube-system")


def test_without_ciliums_resources_the_release_dates_the_pods():
    api = FakeApi(
        {
            SECRETS: listing(
                record(2, updated="2026-11-27T08:00:00Z"), record(1, updated=DEPLOYED)
            ),
            "/apis/apps/v1/namespaces/kube-system/daemonsets/cilium": {
                "metadata": {"creationTimestamp": "2026-11-26T10:41:00Z"}
            },
        }
    )
    found = pods.signals(api, records_of(api))
    assert api.paths[0] == SECRETS  # helm's records, by label, in one request
    assert (found.deployed, found.endpoints) == (FIRST, None)


def test_the_agents_daemonset_dates_a_release_whose_first_revisions_helm_pruned():
    api = FakeApi(
        {
            SECRETS: listing(record(11, updated=DEPLOYED)),
            "/apis/apps/v1/namespaces/kube-system/daemonsets/cilium": {
                "metadata": {"creationTimestamp": "2026-11-01T08:00:00Z"}
            },
        }
    )
    assert pods.signals(api, records_of(api)).deployed == datetime.datetime(
        2026, 11, 1, 8, 0, tzinfo=datetime.UTC
    )


def test_no_release_in_helms_records_reads_nothing_else():
    api = FakeApi({SECRETS: listing()})
    assert pods.signals(api, records_of(api)).deployed is None
    assert api.paths == [SECRETS]


def test_helms_records_unreadable_is_one_line():
    api = FakeApi({})
    with pytest.raises(
        ClusterError,
        match="^helm's records of kube-system/cilium cannot be read on https://kubernetes:6443: "
        "404 Not Found$",
    ):
        pods.signals(api, records_of(api))


def test_with_ciliums_resources_the_endpoints_and_cidrs_are_read():
    api = FakeApi(
        {
            SECRETS: listing(record(1, updated=DEPLOYED)),
            "/apis/cilium.io/v2/ciliumendpoints": {"items": [endpoint("web-1")]},
            "/apis/cilium.io/v2/ciliumnodes": {"items": [ciliumnode("worker0", "10.0.1.0/24")]},
            "/api/v1/nodes": {"items": [node("worker0", "10.4.0.0/16")]},
        }
    )
    found = pods.signals(api, records_of(api))
    assert found.endpoints == {("default", "web-1"): {"10.0.1.5"}}
    assert list(found.cidrs) == ["worker0"]


def test_an_api_error_listing_endpoints_is_one_line():
    api = FakeApi(
        {
            SECRETS: listing(record(1, updated=DEPLOYED)),
            "/apis/cilium.io/v2/ciliumendpoints": ApiException(
                status=500, reason="Internal Server Error"
            ),
        }
    )
    with pytest.raises(
        ClusterError, match="listing CiliumEndpoints on https://kubernetes:6443 failed: 500"
    ):
        pods.signals(api, records_of(api))


# Budgets.


@pytest.mark.parametrize(
    ("selector", "selected"),
    [
        ({"matchLabels": {"app": "db"}}, True),
        ({"matchLabels": {"app": "web"}}, False),
        ({"matchExpressions": [{"key": "app", "operator": "In", "values": ["db", "x"]}]}, True),
        ({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["db"]}]}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, True),
        ({}, False),
        (None, False),
    ],
)
def test_a_budgets_selector(selector, selected):
    assert pods.selects(selector, {"app": "db"}) is selected


# The restart, against a fake API server that plays the controllers and the budgets.


class FakeCluster:
    """Pods of controllers; an evicted pod is gone at once and its controller's replacement is
    Ready ``delay`` polls later. A budget per controller allows ``allowed`` pods missing."""

    server = "https://kubernetes:6443"

    def __init__(self, controllers: dict[str, int], delay=2, allowed=None, clock=None):
        self.clock = clock
        self.delay, self.allowed = delay, allowed or {}
        self.pods = {}
        self.controllers = controllers
        self.pending = []  # (ready at poll, controller)
        self.polls, self.evictions, self.missing_max = 0, [], {}
        self.serial = 0
        self.terminating = False
        for controller, replicas in controllers.items():
            for _ in range(replicas):
                self._add(controller)
        self.core = self

    def _add(self, controller):
        self.serial += 1
        name = f"{controller}-{self.serial}"
        self.pods[name] = {
            **pod(name, owner=f"ReplicaSet/{controller}", uid=f"uid-{name}"),
            "status": {
                "phase": "Running",
                "podIP": "10.4.0.7",
                "conditions": [{"type": "Ready", "status": "True"}],
            },
        }
        self.pods[name]["metadata"]["labels"] = {"app": controller}
        return name

    def ready(self, controller):
        return sum(1 for p in self.pods.values() if p["metadata"]["labels"]["app"] == controller)

    def get(self, path, **query):
        if path == "/api/v1/namespaces/default/pods":
            self.polls += 1
            for due, controller in [p for p in self.pending if p[0] <= self.polls]:
                self.pending.remove((due, controller))
                self._add(controller)
            return {"items": list(self.pods.values())}
        if path == "/apis/policy/v1/namespaces/default/poddisruptionbudgets":
            return {
                "items": [
                    {
                        "metadata": {"name": f"{c}-budget", "namespace": "default"},
                        "spec": {"selector": {"matchLabels": {"app": c}}, "maxUnavailable": a},
                        "status": {"currentHealthy": self.ready(c), "disruptionsAllowed": 0},
                    }
                    for c, a in self.allowed.items()
                ]
            }
        raise AssertionError(path)

    def call(self, function, *args, **kwargs):
        return function(*args)

    def create_namespaced_pod_eviction(self, name, namespace, body, _request_timeout=None):
        assert body.metadata.name == name and namespace == "default"
        if self.terminating:
            raise namespace_terminating()
        controller = self.pods[name]["metadata"]["labels"]["app"]
        missing = self.controllers[controller] - self.ready(controller)
        if controller in self.allowed and missing >= self.allowed[controller]:
            raise ApiException(status=429, reason="Too Many Requests")
        del self.pods[name]
        self.evictions.append((self.polls, name))
        missing += 1
        self.missing_max[controller] = max(self.missing_max.get(controller, 0), missing)
        self.pending.append((self.polls + self.delay, controller))


def namespace_terminating() -> ApiException:
    """What the API server answers an eviction in a namespace being deleted."""
    error = ApiException(status=403, reason="Forbidden")
    error.body = json.dumps(
        {"reason": "Forbidden", "details": {"causes": [{"reason": "NamespaceTerminating"}]}}
    )
    return error


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def old_pods_of(cluster):
    return pods.classify(list(cluster.pods.values()), kwok_lab())


def test_one_pod_of_each_controller_at_a_time_each_after_its_replacement_is_ready():
    clock, lines = Clock(), []
    cluster = FakeCluster({"web": 3, "db": 2})
    old = old_pods_of(cluster)
    done = pods.restart(
        cluster, old, timeout=60, progress=lines.append, clock=clock, sleep=clock.sleep
    )
    assert sorted(p.name for p in done) == sorted(p.name for p in old)
    assert cluster.missing_max == {"web": 1, "db": 1}
    # The two controllers side by side: their first pods go in the same step.
    first_step = [name for poll, name in cluster.evictions if poll == cluster.evictions[0][0]]
    assert sorted(n.rsplit("-", 1)[0] for n in first_step) == ["db", "web"]
    assert "evicted pod default/web-1 on worker0 (ReplicaSet/web recreates it)" in lines
    assert any(
        line.startswith("waiting for ReplicaSet/web in default to make a Ready replacement of")
        for line in lines
    ), lines


def test_a_budget_that_never_allows_stops_after_the_timeout_naming_it():
    clock, lines = Clock(), []
    cluster = FakeCluster({"db": 2}, allowed={"db": 0})
    with pytest.raises(pods.NotRestarted) as stopped:
        pods.restart(
            cluster,
            old_pods_of(cluster),
            timeout=12,
            progress=lines.append,
            clock=clock,
            sleep=clock.sleep,
        )
    assert str(stopped.value) == (
        "pod default/db-1 on worker0 (ReplicaSet/db) could not be evicted in 12s: "
        "PodDisruptionBudget default/db-budget (maxUnavailable 0: 2 healthy, ? needed, 0 "
        "disruptions allowed) allows no eviction; no pod was restarted before; make room in the "
        "budget (more replicas, or a looser budget) and run again"
    )
    assert cluster.evictions == []
    assert 12 <= clock.now < 14
    waits = [
        line
        for line in lines
        if line.startswith("waiting for PodDisruptionBudget default/db-budget")
    ]
    # Every few seconds, not every poll.
    assert 2 <= len(waits) <= 3, lines


def test_a_replacement_that_never_comes_stops_after_the_timeout():
    clock = Clock()
    cluster = FakeCluster({"web": 2}, delay=10**6)
    with pytest.raises(
        pods.NotRestarted,
        match=r"^ReplicaSet/web in default has not made a Ready replacement of the evicted pod web-1 in 5s \(1 of 2 ready\); no pod was restarted before",
    ):
        pods.restart(cluster, old_pods_of(cluster), timeout=5, clock=clock, sleep=clock.sleep)
    assert [name for _, name in cluster.evictions] == ["web-1"]


def test_pods_left_are_never_evicted():
    clock = Clock()
    cluster = FakeCluster({})
    left = pods.classify([pod("once-x", owner="Job/once"), mirror(), pod("bare")], kwok_lab())
    assert pods.restart(cluster, left, timeout=5, clock=clock, sleep=clock.sleep) == []
    assert cluster.evictions == [] and clock.now == 0


def test_a_pod_whose_namespace_is_going_is_not_waited_for():
    clock = Clock()
    cluster = FakeCluster({"web": 2})
    cluster.terminating = True
    assert (
        pods.restart(cluster, old_pods_of(cluster), timeout=5, clock=clock, sleep=clock.sleep) == []
    )
    assert cluster.evictions == [] and clock.now < 5

"""After the rollback: the pods Cilium addressed (an IP outside the node's old pod CIDR, or a
CiliumEndpoint listing it), the CLI's flags, and the node side's refusal of paths it must not
remove. No API server."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from pyinfra.api.exceptions import OperationValueError
from pyinfra_fixtures import run_operation
from test_cluster_old_pods import FakeApi, endpoint, names, pod

from cilium_lab.cli import cli
from cilium_lab.cluster import ClusterError, pods
from facts.cilium_leftovers import CiliumLeftovers
from operations.cilium_leftovers import cilium_leftovers_absent


def bare_node(name):
    # The guide's nodes: no spec.podCIDRs (its kube-controller-manager allocates none).
    return {"metadata": {"name": name}, "spec": {}}


def kwok_node(name, cidr):
    return {"metadata": {"name": name}, "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}}


def test_an_address_outside_the_old_pod_cidr_is_ciliums():
    ranges = pods.old_ranges([bare_node("worker0")], {"worker0": "10.4.0.0/16"})
    found = pods.classify_after_rollback(
        [
            pod("web-1", ip="10.0.3.7", owner="ReplicaSet/web"),
            pod("bare", ip="10.4.0.9"),
            pod("host", ip="192.168.1.14", spec__hostNetwork=True),
        ],
        ranges,
    )
    assert names(found) == [("default", "web-1")]
    (web,) = found
    assert web.action == pods.EVICT
    assert web.reason == "IP 10.0.3.7 is outside the old CNI's pod CIDR on worker0 (10.4.0.0/16)"
    assert "whose" not in pods.split(found)["restart"][0]


def test_the_advice_says_whose_address_it_is():
    (bare,) = pods.classify_after_rollback(
        [pod("bare", ip="10.0.3.9")], {"worker0": pods._networks(["10.4.0.0/16"])}
    )
    assert bare.advice().startswith("pod default/bare on worker0 is Cilium's (IP 10.0.3.9")


def test_the_inventorys_pod_cidr_wins_over_the_nodes_own():
    ranges = pods.old_ranges(
        [kwok_node("worker0", "10.99.0.0/16"), kwok_node("worker1", "10.5.0.0/16")],
        {"worker0": "10.4.0.0/16"},
    )
    assert {n: list(map(str, r)) for n, r in ranges.items()} == {
        "worker0": ["10.4.0.0/16"],
        "worker1": ["10.5.0.0/16"],
    }


def test_with_ipam_kubernetes_only_a_ciliumendpoint_tells():
    # Cilium handed addresses from the Node's own podCIDR, the old bridge's range.
    ranges = pods.old_ranges([kwok_node("worker0", "10.4.0.0/16")])
    endpoints = pods.endpoint_addresses([endpoint("web-1", ips=("10.4.0.20",))])
    found = pods.classify_after_rollback(
        [
            pod("web-1", ip="10.4.0.20", owner="ReplicaSet/web"),
            pod("web-2", ip="10.4.0.21", owner="ReplicaSet/web"),
        ],
        ranges,
        endpoints,
    )
    assert names(found) == [("default", "web-1")]
    assert found[0].reason == "its CiliumEndpoint lists its IP 10.4.0.20"
    # Without Cilium's CRDs (deleted by hand), nothing tells.
    assert pods.classify_after_rollback([pod("web-1", ip="10.4.0.20")], ranges, None) == []


def test_the_kwok_lab_has_nothing_to_restart():
    # kwok hands pods addresses of their Node's podCIDR, and there are no cilium.io resources.
    api = FakeApi(
        {
            "/api/v1/nodes": {"items": [kwok_node("worker0", "10.4.0.0/16")]},
            "/api/v1/pods": {"items": [pod("web-1", ip="10.4.0.7", owner="ReplicaSet/web")]},
        }
    )
    assert pods.find_after_rollback(api, {"worker0": "10.4.0.0/16"}) == ([], [])


def test_a_node_without_an_old_range_is_named():
    api = FakeApi(
        {
            "/api/v1/nodes": {"items": [bare_node("worker0")]},
            "/api/v1/pods": {"items": [pod("web-1", ip="10.0.3.7")]},
            "/apis/cilium.io/v2/ciliumendpoints": {"items": []},
        }
    )
    assert pods.find_after_rollback(api) == ([], ["worker0"])


def test_a_pod_cidr_of_a_node_the_cluster_does_not_have_is_one_line():
    api = FakeApi({"/api/v1/nodes": {"items": [bare_node("worker0")]}})
    with pytest.raises(ClusterError, match="no node worker9 on https://kubernetes:6443"):
        pods.find_after_rollback(api, {"worker9": "10.9.0.0/16"})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pod-cidr", "worker0=10.4.0.0/33"], "'worker0=10.4.0.0/33' is not NODE=CIDR"),
        (["--pod-cidr", "10.4.0.0/16"], "is not NODE=CIDR"),
        (["--pod-cidr", "w=10.4.0.0/16", "--pod-cidr", "w=10.5.0.0/16"], "give each node once"),
    ],
)
def test_a_bad_pod_cidr_is_a_usage_error(args, message):
    result = CliRunner().invoke(cli, ["restart-pods", "--after-rollback", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_pod_cidr_goes_with_after_rollback():
    result = CliRunner().invoke(cli, ["restart-pods", "--pod-cidr", "w=10.4.0.0/16"])
    assert result.exit_code == 2
    assert "--pod-cidr goes with --after-rollback" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"bpffs_root": "sys/fs/bpf"}, "cilium_bpffs_root 'sys/fs/bpf' is not an absolute path"),
        ({"state_dirs": "/var/run/cilium"}, "is not a list of directories"),
        ({"state_dirs": ["/var/run/cilium", "/"]}, "'/' is not a directory of Cilium's own"),
        ({"state_dirs": ["/var//"]}, "'/var//' is not a directory of Cilium's own"),
        ({"state_dirs": ["run/cilium"]}, "'run/cilium' is not an absolute path"),
    ],
)
def test_paths_it_must_not_remove_stop_it_before_any_command(args, message):
    with pytest.raises(OperationValueError, match=message):
        run_operation(cilium_leftovers_absent, {CiliumLeftovers: CiliumLeftovers.default()}, **args)


def test_after_a_rollback_pods_that_lost_their_network_do_not_hold_the_restart():
    from test_cluster_old_pods import Clock, FakeCluster, old_pods_of

    class Unserved(FakeCluster):
        # Cilium's devices are gone: every pod there at the start turns unready after a poll.
        def get(self, path, **query):
            answer = super().get(path, **query)
            if path.endswith("/pods") and self.polls > 1:
                for name in self.first:
                    if name in self.pods:
                        self.pods[name]["status"]["conditions"] = [
                            {"type": "Ready", "status": "False"}
                        ]
            return answer

    def run(unserved):
        clock = Clock()
        cluster = Unserved({"dns": 2})
        cluster.first = set(cluster.pods)
        old = old_pods_of(cluster)
        restart = pods.Restart(
            cluster, old, timeout=30, clock=clock, sleep=clock.sleep, unserved=unserved
        )
        return restart, old

    restart, old = run(unserved=False)
    with pytest.raises(pods.NotRestarted, match="has not made a Ready replacement"):
        restart.run()
    restart, old = run(unserved=True)
    assert sorted(p.name for p in restart.run()) == sorted(p.name for p in old)

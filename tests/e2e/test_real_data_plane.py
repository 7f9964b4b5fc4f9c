"""
The chapter on the real data plane (tests/e2e/real_lab.py): real kubelets, containerd, runc,
kube-proxy and the bridge plugin before the migration, Cilium's real agents after it, and
`cilium-lab connectivity` proving the network both times.

Real: the nodes' units, the pods, kube-proxy's rules, the chart, Cilium's agents and operator
(built from github.com/cilium/cilium, datapath compiled and attached on every node), pyinfra
over SSH. Stand-ins: those of the sim's real nodes (README, "The simulated lab": the runc
wrapper, the kubelet without QoS cgroups, the kernel settings' files, the bpffs directory), and
the lab's own routing table for pod CIDRs another lab holds (real_lab.py).

The scenarios run in order on one lab: the old network, the migration, its re-run, a values
change, the way back.
"""

from __future__ import annotations

import ipaddress
import json
import runpy
import subprocess

import pytest
from e2e_sim import ROLLBACK
from kubernetes.stream import stream

from cilium_lab.sim.harness import GROUP_DATA

pytestmark = pytest.mark.e2e

OP_RELEASE = "Install Cilium with helm"
OP_RESTART = "Restart the pods started with the previous CNI"
# kube-proxy's chains (the kubelet's own KUBE-FIREWALL, KUBE-KUBELET-CANARY and
# KUBE-IPTABLES-HINT stay).
KUBE_PROXY_CHAINS = (
    "KUBE-SERVICES",
    "KUBE-SVC-",
    "KUBE-SEP-",
    "KUBE-NODEPORTS",
    "KUBE-POSTROUTING",
)


def connectivity(lab) -> tuple[int, dict | None, str]:
    proc = lab.run_cli("connectivity", "-o", "json", capture_output=True, text=True, timeout=600)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        report = None
    return proc.returncode, report, proc.stderr


def failed_checks(report: dict | None) -> list[str]:
    if report is None:
        return ["no report"]
    return [
        f"{c['check']} {c['source']} -> {c['target']}: {c['error']}"
        for c in report.get("checks", [])
        if not c.get("ok")
    ]


def agent_status(lab) -> dict[str, str]:
    """node -> `cilium-dbg status` as its agent prints it, read through the API's exec."""
    cluster = lab.cluster
    agents = cluster.core.list_namespaced_pod("kube-system", label_selector="k8s-app=cilium")
    return {
        pod.spec.node_name: stream(
            cluster.core.connect_get_namespaced_pod_exec,
            pod.metadata.name,
            "kube-system",
            container="cilium-agent",
            command=["cilium-dbg", "status"],
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
        )
        for pod in agents.items
    }


def on_pod_networks(lab) -> dict[str, str]:
    return {name: pod["uid"] for name, pod in lab.pods().items() if not pod["host_network"]}


@pytest.fixture(scope="module")
def before(real_lab):
    """The old network's connectivity, then the pods as they were."""
    return connectivity(real_lab), real_lab.pods()


@pytest.fixture(scope="module")
def migrated(real_lab, before):
    # The chapter deletes the workstation's routes to the pod CIDRs: the lab's own table goes with
    # them, or it would carry pod traffic that Cilium's tunnel must carry now.
    real_lab.drop_own_pod_routes()
    run = real_lab.pyinfra("-y")
    again = real_lab.pyinfra("-y")
    return run, again


def test_before_the_migration_the_old_network_works(before):
    (code, report, stderr), _ = before
    assert code == 0, failed_checks(report) or stderr
    assert report["passed"] == len(report["checks"]) > 0


def test_the_chapter_converges_on_real_nodes(migrated):
    run, _ = migrated
    assert run.returncode == 0, run.log[-4000:]
    assert run.changed()[OP_RELEASE] == {"@local"}


def test_a_rerun_changes_nothing(migrated):
    _, again = migrated
    assert again.returncode == 0, again.log[-4000:]
    assert again.hosts_changed() == set(), again.changed()


def test_the_agents_run_the_datapath_with_kube_proxy_replacement(real_lab, migrated):
    statuses = agent_status(real_lab)
    assert set(statuses) == set(real_lab.nodes)
    for node, status in statuses.items():
        lines = {
            line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip()
            for line in status.splitlines()
            if ":" in line
        }
        assert lines.get("KubeProxyReplacement", "").startswith("True"), (node, status)
        # The datapath is compiled and attached: the attach mode is reported, the tunnel is up.
        assert lines.get("Attach Mode") in {"TCX", "Legacy TC"}, (node, status)
        assert "Tunnel [vxlan]" in lines.get("Routing", ""), (node, status)
        assert lines.get("Cilium", "").startswith("Ok"), (node, status)


def test_the_old_network_is_gone_from_the_nodes_and_the_workstation(real_lab, migrated):
    for node in real_lab.nodes:
        rules = real_lab.iptables(node)
        chains = [line for line in rules if line.startswith(":") or line.startswith("-A")]
        assert not [c for c in chains if any(k in c for k in KUBE_PROXY_CHAINS)], node
        assert "10-bridge.conf" not in real_lab.sh(node, "ls /etc/cni/net.d"), node
        persisted = real_lab.sh(
            node,
            "grep -rls '^br_netfilter' /etc/modules-load.d /etc/modules 2>/dev/null || true",
        )
        assert persisted.strip() == "", (node, persisted)
    # No table of this machine routes a pod CIDR to one of this lab's nodes any more: the
    # chapter deleted the routes the sim added, and the lab's own table went with them.
    cfg = real_lab.cfg
    addresses = {str(cfg.address(n)) for n in cfg.nodes}
    for node in cfg.nodes:
        shown = subprocess.run(
            ["ip", "-j", "route", "show", "table", "all", "exact", cfg.pod_cidr(node)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        gateways = {route.get("gateway") for route in json.loads(shown or "[]")}
        assert not gateways & addresses, (node, shown)


def test_after_the_migration_the_network_works_over_cilium(real_lab, migrated):
    code, report, stderr = connectivity(real_lab)
    assert code == 0, failed_checks(report) or stderr
    assert report["passed"] == len(report["checks"]) > 0


def test_the_pods_a_controller_recreates_have_ciliums_addresses(real_lab, migrated, before):
    """CoreDNS's and nginx's pods came back with Cilium's addresses; the bare busybox pod, which
    nothing recreates, keeps its old one (the run names it)."""
    _, pods_before = before
    old = [ipaddress.ip_network(real_lab.cfg.pod_cidr(n)) for n in real_lab.nodes]

    def on_the_old_network(pod) -> bool:
        return any(ipaddress.ip_address(pod["ip"]) in net for net in old)

    assert on_the_old_network(pods_before["default/busybox"])
    pods = real_lab.pods()
    workloads = {
        n: p for n, p in pods.items() if n.startswith(("kube-system/coredns-", "default/nginx-"))
    }
    assert workloads and not [n for n, p in workloads.items() if on_the_old_network(p)], workloads
    assert on_the_old_network(pods["default/busybox"])


@pytest.fixture(scope="module")
def values_changed(real_lab, migrated):
    values = runpy.run_path(str(GROUP_DATA / "all.py"))["cilium_values"]
    data = ("--data", f"cilium_values={json.dumps({**values, 'hubble': {'enabled': False}})}")
    before = (on_pod_networks(real_lab), real_lab.helm_revisions())
    run = real_lab.pyinfra("-y", *data)
    after = (on_pod_networks(real_lab), real_lab.helm_revisions())
    return run, before, after


def test_a_values_change_upgrades_once_and_restarts_no_pod_cilium_manages(values_changed):
    """On real agents a values change rolls the DaemonSet: every pod is then older than its
    agent, and none of them may be restarted for it (they have their CiliumEndpoints)."""
    run, (uids, revisions), (uids_after, revisions_after) = values_changed
    assert run.returncode == 0, run.log[-4000:]
    assert len(revisions_after) == len(revisions) + 1
    assert run.unchanged()[OP_RESTART] == {"@local"}
    assert {n for n in uids if n.startswith(("kube-system/coredns-", "default/nginx-"))}
    assert uids_after == uids


@pytest.fixture(scope="module")
def rolled_back(real_lab, values_changed):
    run = real_lab.pyinfra("-y", deploy=ROLLBACK)
    # The way back routes the pod CIDRs via the nodes again, where no other lab holds them; the
    # lab's own table stands in for those another lab holds (real_lab.py).
    real_lab.own_pod_routes()
    return run


def test_the_way_back_converges(rolled_back):
    assert rolled_back.returncode == 0, rolled_back.log[-4000:]


def test_after_the_way_back_nothing_of_cilium_is_left_on_the_nodes(real_lab, rolled_back):
    for node in real_lab.nodes:
        rules = real_lab.iptables(node)
        assert not [line for line in rules if "CILIUM" in line], node
        # kube-proxy runs again and has written its rules back.
        assert any(line.startswith(":KUBE-SERVICES") for line in rules), node
        links = real_lab.sh(node, "ip -o link show")
        assert "cilium_" not in links and "lxc_health" not in links, (node, links)
        conf = real_lab.sh(node, "ls /etc/cni/net.d").split()
        assert "10-bridge.conf" in conf and not [c for c in conf if "cilium" in c], (node, conf)


def test_after_the_way_back_the_old_network_works_again(real_lab, rolled_back):
    code, report, stderr = connectivity(real_lab)
    assert code == 0, failed_checks(report) or stderr
    assert report["passed"] == len(report["checks"]) > 0


def test_after_the_way_back_the_pods_are_on_the_old_network(real_lab, rolled_back):
    old = [ipaddress.ip_network(real_lab.cfg.pod_cidr(n)) for n in real_lab.nodes]
    pods = {
        n: p
        for n, p in real_lab.pods().items()
        if not p["host_network"] and p["ip"] and not n.startswith("cilium-lab-connectivity/")
    }
    assert pods
    assert not [
        n for n, p in pods.items() if not any(ipaddress.ip_address(p["ip"]) in net for net in old)
    ], pods

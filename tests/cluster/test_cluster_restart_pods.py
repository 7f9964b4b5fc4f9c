"""
restart-pods against the emulated API (see emulator.py): owned and unowned old-CNI pods.
"""

from __future__ import annotations

import json

from click.testing import CliRunner

from cilium_lab.cli import cli
from conftest import LAB_NODES, now


def lab_with_pods(kubelet):
    agents_ready = now(-60)
    for name, ip in LAB_NODES:
        kubelet.node(name, ip)
        kubelet.agent(name, ip, ready=True, ready_at=agents_ready)
    kubelet.cilium(nodes=3, ready=3, operator_available=2)
    kubelet.pod("default", "web-old", "worker0", "10.4.0.7", started=now(-3600))
    kubelet.pod("default", "db-old", "worker1", "10.5.0.3", started=now(-3600), owner_kind="StatefulSet")
    kubelet.pod("default", "bare-old", "worker1", "10.5.0.4", started=now(-3600), owner_kind=None)
    kubelet.pod("default", "web-new", "worker0", "10.0.1.23", started=now(-5))
    kubelet.pod("kube-system", "hostnet-old", "worker0", "192.168.1.14", started=now(-3600),
                host_network=True)


def test_lists_without_yes_and_changes_nothing(api, kubelet):
    lab_with_pods(kubelet)
    before = kubelet.pod_names()
    result = CliRunner().invoke(cli, ["restart-pods", "--kubeconfig", str(api.kubeconfig), "-o", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [p["name"] for p in report["owned"]] == ["db-old", "web-old"]
    assert [p["name"] for p in report["unowned"]] == ["bare-old"]
    assert report["deleted"] == []
    assert kubelet.pod_names() == before


def test_yes_deletes_exactly_the_owned_old_pods(api, kubelet):
    lab_with_pods(kubelet)
    before = kubelet.pod_names()
    result = CliRunner().invoke(cli, ["restart-pods", "--kubeconfig", str(api.kubeconfig), "--yes"])
    assert result.exit_code == 0, result.output
    assert before - kubelet.pod_names() == {"default/web-old", "default/db-old"}
    assert "not deleted, no controller recreates it: default/bare-old" in result.output
    # Run again: nothing left to delete.
    result = CliRunner().invoke(cli, ["restart-pods", "--kubeconfig", str(api.kubeconfig), "--yes", "-o", "json"])
    assert json.loads(result.output)["deleted"] == []


def test_ip_outside_ciliums_cidrs_is_old_even_if_started_later(api, kubelet, cluster):
    lab_with_pods(kubelet)
    kubelet.pod("default", "late-old-ip", "worker0", "10.4.0.99", started=now(-1))
    cluster.custom.create_cluster_custom_object("cilium.io", "v2", "ciliumnodes", {
        "apiVersion": "cilium.io/v2", "kind": "CiliumNode", "metadata": {"name": "worker0"},
        "spec": {"ipam": {"podCIDRs": ["10.0.1.0/24"]}},
    })
    result = CliRunner().invoke(cli, ["restart-pods", "--kubeconfig", str(api.kubeconfig), "-o", "json"])
    owned = {p["name"]: p["reason"] for p in json.loads(result.output)["owned"]}
    assert "outside Cilium's pod CIDRs 10.0.1.0/24" in owned["late-old-ip"]
    assert "web-new" not in owned

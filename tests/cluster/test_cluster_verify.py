"""
verify against the emulated API (see emulator.py): the tests play the kubelet and controllers.
"""

from __future__ import annotations

import json
import threading
import time

from click.testing import CliRunner

from cilium_lab.cli import cli
from cilium_lab.cluster import verify
from conftest import LAB_NODES


def healthy_lab(kubelet):
    for name, ip in LAB_NODES:
        kubelet.node(name, ip, ready=True)
        kubelet.agent(name, ip, ready=True)
    kubelet.cilium(nodes=len(LAB_NODES), ready=len(LAB_NODES), operator_available=2)


def test_healthy_when_every_node_has_a_ready_agent_with_its_ip(cluster, kubelet):
    healthy_lab(kubelet)
    health = verify.snapshot(cluster)
    assert health.healthy, health.as_dict()
    assert health.agents_ready == 3 and health.nodes_ready == 3


def test_agent_with_a_pod_ip_is_not_healthy(cluster, kubelet):
    healthy_lab(kubelet)
    kubelet.agent_status("worker1", "10.5.0.9", ready=True)
    health = verify.snapshot(cluster)
    assert not health.healthy
    worker1 = next(n for n in health.nodes if n.node == "worker1")
    assert worker1.missing == ["agent IP 10.5.0.9 is not the node's InternalIP 192.168.1.15"]


def test_wait_follows_not_ready_to_ready(cluster, kubelet):
    """Nodes NotReady and agents Pending; the 'kubelet' makes them ready while verify waits."""
    for name, ip in LAB_NODES:
        kubelet.node(name, ip, ready=False)
        kubelet.agent(name, None, ready=False)
    kubelet.cilium(nodes=3, ready=0, operator_available=0)

    def become_ready():
        time.sleep(0.5)
        for index, (name, ip) in enumerate(LAB_NODES, start=1):
            kubelet.agent_status(name, ip, ready=True)
            kubelet.daemonset_status(3, index)
            kubelet.node_status(name, ip, ready=True)
        kubelet.operator_status(2)

    progress: list[str] = []
    thread = threading.Thread(target=become_ready)
    thread.start()
    started = time.monotonic()
    health = verify.wait(cluster, timeout=20, progress=progress.append)
    thread.join()
    assert health.healthy, health.as_dict()
    assert time.monotonic() - started < 15
    assert progress[0].startswith("agents ready 0/3, nodes ready 0/3")


def test_node_without_agent_times_out_with_a_per_node_report(api, kubelet):
    healthy_lab(kubelet)
    kubelet.node("worker2", "192.168.1.16", ready=False)
    kubelet.daemonset_status(4, 3, scheduled=3)

    started = time.monotonic()
    result = CliRunner().invoke(cli, ["verify", "--kubeconfig", str(api.kubeconfig), "--timeout", "1.5"])
    elapsed = time.monotonic() - started

    assert result.exit_code == 1, result.output
    assert 1.5 <= elapsed < 10
    line = next(l for l in result.output.splitlines() if l.startswith("worker2"))
    assert "no cilium agent pod scheduled" in line and "node not Ready" in line
    assert "DaemonSet cilium: 3/4 ready, 3 scheduled" in result.output
    assert "not healthy after 1.5s" in result.output
    assert "waiting: agents ready 3/4, nodes ready 3/4" in result.output


def test_cli_json_and_exit_codes(api, kubelet):
    healthy_lab(kubelet)
    result = CliRunner().invoke(cli, ["verify", "--kubeconfig", str(api.kubeconfig), "--no-wait", "-o", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["healthy"] and [n["node"] for n in report["nodes"]] == ["control0", "worker0", "worker1"]

    kubelet.operator_status(0)
    result = CliRunner().invoke(cli, ["verify", "--kubeconfig", str(api.kubeconfig), "--no-wait", "-o", "json"])
    assert result.exit_code == 1
    assert "Deployment kube-system/cilium-operator is not available" in json.loads(result.output)["problems"]

"""
verify against a real API server (local_control_plane.py): the real DaemonSet and Deployment
controllers and scheduler act on Cilium's workloads, kwok plays the kubelets (the stand-in).
"""

from __future__ import annotations

import json
import threading
import time

from click.testing import CliRunner
from conftest import KWOK_LABEL, LAB_NODES, wait_for

from cilium_lab.cli import cli
from cilium_lab.cluster import verify


def healthy(cluster, namespace):
    return wait_for(
        lambda: (h := verify.snapshot(cluster, namespace)).healthy and h, "Cilium healthy"
    )


def test_healthy_when_every_node_has_a_ready_agent_with_its_ip(cluster, namespace, cilium):
    cilium.agents()
    cilium.operator()
    health = healthy(cluster, namespace)
    assert health.agents_ready == 3 and health.nodes_ready == 3
    assert {n.node: n.agent_ip for n in health.nodes} == {name: ip for name, ip, _ in LAB_NODES}
    assert [(w.kind, w.name, w.desired, w.ready) for w in health.workloads] == [
        ("DaemonSet", "cilium", 3, 3),
        ("Deployment", "cilium-operator", 2, 2),
    ]


def test_agent_off_host_network_gets_a_pod_ip_and_is_not_healthy(cluster, namespace, cilium):
    cilium.agents(host_network=False)
    cilium.operator()
    wait_for(
        lambda: len([p for p in cilium.agent_pods() if p.status.pod_ip]) == 3, "agents with IPs"
    )
    health = verify.snapshot(cluster, namespace)
    assert not health.healthy
    worker1 = next(n for n in health.nodes if n.node == "worker1")
    assert worker1.agent_ip.startswith("10.5.")  # from worker1's pod CIDR, as kwok assigns it
    assert worker1.missing == [
        f"agent {worker1.agent} not on hostNetwork",
        f"agent IP {worker1.agent_ip} is not the node's InternalIP 192.168.1.15",
    ]


def test_missing_operator_is_named(cluster, namespace, cilium):
    cilium.agents()
    wait_for(lambda: verify.snapshot(cluster, namespace).agents_ready == 3, "agents ready")
    health = verify.snapshot(cluster, namespace)
    assert not health.healthy
    assert f"Deployment {namespace}/cilium-operator does not exist" in health.problems


def test_wait_follows_a_new_node_to_ready(cluster, namespace, cilium, extra_nodes):
    """A fourth node registers without a kubelet: its agent stays Pending. Its kubelet (kwok)
    comes while verify waits, and verify returns healthy on the watch event."""
    cilium.agents()
    cilium.operator()
    healthy(cluster, namespace)
    extra_nodes("worker2", "192.168.1.16", "10.6.0.0/16", kubelet=False)

    def kubelet_arrives():
        time.sleep(1.0)
        cluster.core.patch_node("worker2", {"metadata": {"labels": {KWOK_LABEL: "true"}}})

    progress: list[str] = []
    thread = threading.Thread(target=kubelet_arrives)
    thread.start()
    health = verify.wait(cluster, namespace, timeout=60, progress=progress.append)
    thread.join()
    assert health.healthy, health.as_dict()
    assert health.agents_ready == 4
    assert any(line.startswith("agents ready 3/4, nodes ready 3/4") for line in progress), progress


def test_node_without_kubelet_times_out_with_a_per_node_report(
    kubeconfig, cluster, namespace, cilium, extra_nodes
):
    cilium.agents()
    cilium.operator()
    healthy(cluster, namespace)
    extra_nodes("worker2", "192.168.1.16", "10.6.0.0/16", kubelet=False)
    wait_for(lambda: len(cilium.agent_pods()) == 4, "the DaemonSet controller's pod for worker2")

    started = time.monotonic()
    result = CliRunner().invoke(
        cli, ["verify", "--kubeconfig", str(kubeconfig), "--namespace", namespace, "--timeout", "2"]
    )
    elapsed = time.monotonic() - started

    assert result.exit_code == 1, result.output
    assert elapsed >= 2
    line = next(x for x in result.output.splitlines() if x.startswith("worker2"))
    assert "not ready (Pending)" in line and "node not Ready" in line
    assert "DaemonSet cilium: 3/4 ready, 4 updated" in result.output
    assert "not healthy after 2s" in result.output
    assert "waiting: agents ready 3/4, nodes ready 3/4" in result.output


def test_crash_looping_agent_fails_at_once(kubeconfig, cluster, namespace, cilium, extra_nodes):
    """An agent in CrashLoopBackOff does not get better by waiting: verify says so without
    waiting out its timeout. (worker2 has no kubelet, so the test writes the status one would.)"""
    cilium.agents()
    cilium.operator()
    healthy(cluster, namespace)
    extra_nodes("worker2", "192.168.1.16", "10.6.0.0/16", kubelet=False)
    pod = wait_for(
        lambda: next((p for p in cilium.agent_pods() if p.spec.node_name == "worker2"), None),
        "an agent pod bound to worker2",
    )
    cluster.core.patch_namespaced_pod_status(
        pod.metadata.name,
        namespace,
        {
            "status": {
                "containerStatuses": [
                    {
                        "name": "cilium-agent",
                        "image": "cilium",
                        "imageID": "",
                        "ready": False,
                        "restartCount": 5,
                        "state": {
                            "waiting": {"reason": "CrashLoopBackOff", "message": "back-off 2m40s"}
                        },
                    }
                ]
            }
        },
    )

    started = time.monotonic()
    result = CliRunner().invoke(
        cli,
        ["verify", "--kubeconfig", str(kubeconfig), "--namespace", namespace, "--timeout", "120"],
    )
    assert result.exit_code == 1, result.output
    assert time.monotonic() - started < 60
    assert (
        f"pod {pod.metadata.name} on worker2 container cilium-agent: CrashLoopBackOff"
        in result.output
    )
    assert "waiting will not help" in result.output


def test_cli_json_and_exit_codes(kubeconfig, cluster, namespace, cilium):
    cilium.agents()
    cilium.operator()
    healthy(cluster, namespace)
    args = [
        "verify",
        "--kubeconfig",
        str(kubeconfig),
        "--namespace",
        namespace,
        "--no-wait",
        "-o",
        "json",
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["healthy"] and [n["node"] for n in report["nodes"]] == [
        "control0",
        "worker0",
        "worker1",
    ]

    # A new spec whose pods can never run (no node matches): the rollout never catches up.
    cluster.apps.patch_namespaced_deployment(
        "cilium-operator",
        namespace,
        {"spec": {"template": {"spec": {"nodeSelector": {"cilium-lab.test/no-such": "node"}}}}},
    )
    report = json.loads(CliRunner().invoke(cli, args).output)
    assert not report["healthy"]
    assert any(
        p.startswith(f"Deployment {namespace}/cilium-operator") for p in report["problems"]
    ), report


def test_an_evicted_operator_pod_beside_a_ready_deployment_is_healthy(
    kubeconfig, cluster, namespace, cilium
):
    """The issue's case: a cilium-operator pod evicted (its kubelet's words, written here), its
    ReplicaSet's replacement ready: healthy, at once, where it said "waiting will not help"."""
    cilium.agents()
    cilium.operator()
    healthy(cluster, namespace)
    operator = next(
        p
        for p in cluster.core.list_namespaced_pod(
            namespace, label_selector="name=cilium-operator"
        ).items
    )
    cluster.core.patch_namespaced_pod_status(
        operator.metadata.name,
        namespace,
        {
            "status": {
                "phase": "Failed",
                "reason": "Evicted",
                "message": "The node was low on resource: memory.",
                "conditions": [{"type": "Ready", "status": "False"}],
            }
        },
    )
    # Its ReplicaSet makes another; the evicted one stays, as the kubelet leaves it.
    health = wait_for(
        lambda: (h := verify.snapshot(cluster, namespace)).healthy and h, "the replacement ready"
    )
    assert [w.describe() for w in health.workloads if w.kind == "Deployment"] == [
        "Deployment cilium-operator: 2/2 ready, 2 updated"
    ]
    assert (
        cluster.core.read_namespaced_pod(operator.metadata.name, namespace).status.phase == "Failed"
    )
    result = CliRunner().invoke(
        cli,
        ["verify", "--kubeconfig", str(kubeconfig), "--namespace", namespace, "--timeout", "30"],
    )
    assert result.exit_code == 0, result.output


def test_a_long_wait_says_every_few_seconds_what_it_waits_for(
    kubeconfig, cluster, namespace, cilium, extra_nodes
):
    """Nothing changes while verify waits: it still says, every few seconds, what is missing."""
    cilium.agents()
    cilium.operator()
    healthy(cluster, namespace)
    extra_nodes("worker2", "192.168.1.16", "10.6.0.0/16", kubelet=False)
    wait_for(
        lambda: any(p.spec.node_name == "worker2" for p in cilium.agent_pods()),
        "an agent pod bound to worker2",
    )
    result = CliRunner().invoke(
        cli,
        ["verify", "--kubeconfig", str(kubeconfig), "--namespace", namespace, "--timeout", "12"],
    )
    assert result.exit_code == 1
    waits = [line for line in result.stderr.splitlines() if line.startswith("waiting: ")]
    assert len(waits) >= 3, result.stderr
    assert all("waiting for worker2: " in line and "node not Ready" in line for line in waits), (
        waits
    )

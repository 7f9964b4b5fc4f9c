"""verify.judge: the API's objects as JSON in (what ``cilium-lab verify`` and the CiliumHealth
fact read), Cilium's health per node and per workload out. No API server."""

from __future__ import annotations

from cilium_lab.cluster.verify import judge

NODES = [("control0", "192.168.1.11"), ("worker0", "192.168.1.14")]


def node(name, ip, ready=True):
    return {
        "metadata": {"name": name},
        "status": {
            "addresses": [
                {"type": "Hostname", "address": name},
                {"type": "InternalIP", "address": ip},
            ],
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def agent(name, node_name, ip, ready=True, host_network=True, phase="Running", waiting=None):
    pod = {
        "metadata": {
            "name": name,
            "namespace": "kube-system",
            "labels": {"k8s-app": "cilium", "app.kubernetes.io/part-of": "cilium"},
        },
        "spec": {"nodeName": node_name, "hostNetwork": host_network},
        "status": {
            "phase": phase,
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }
    if waiting:
        pod["status"]["containerStatuses"] = [
            {"name": "cilium-agent", "state": {"waiting": {"reason": waiting}}}
        ]
    return pod


def daemonset(name="cilium", desired=2, updated=2, ready=2, generation=1, observed=1):
    return {
        "metadata": {"name": name, "generation": generation},
        "status": {
            "desiredNumberScheduled": desired,
            "updatedNumberScheduled": updated,
            "numberReady": ready,
            "observedGeneration": observed,
        },
    }


def deployment(name="cilium-operator", replicas=1, updated=1, ready=1):
    return {
        "metadata": {"name": name, "generation": 3},
        "spec": {"replicas": replicas},
        "status": {"updatedReplicas": updated, "readyReplicas": ready, "observedGeneration": 3},
    }


def healthy_cluster():
    nodes = [node(n, ip) for n, ip in NODES]
    pods = [agent(f"cilium-{n}", n, ip) for n, ip in NODES]
    return nodes, pods, [daemonset()], [deployment()]


def test_every_node_with_a_ready_agent_on_its_ip_is_healthy():
    health = judge(*healthy_cluster())
    assert health.healthy
    assert health.problems == [] and health.failing == []
    assert [(n.node, n.agent, n.agent_ip, n.missing) for n in health.nodes] == [
        ("control0", "cilium-control0", "192.168.1.11", []),
        ("worker0", "cilium-worker0", "192.168.1.14", []),
    ]
    assert [w.describe() for w in health.workloads] == [
        "DaemonSet cilium: 2/2 ready, 2 updated",
        "Deployment cilium-operator: 1/1 ready, 1 updated",
    ]
    data = health.as_dict()
    assert (data["healthy"], data["agents_ready"], data["nodes_ready"]) == (True, 2, 2)
    assert health.progress() == "agents ready 2/2, nodes ready 2/2, cilium-operator 1/1"


def test_agent_off_host_network_with_a_pod_ip_is_named_on_its_node():
    nodes, pods, daemonsets, deployments = healthy_cluster()
    pods[1] = agent("cilium-worker0", "worker0", "10.4.0.9", host_network=False)
    health = judge(nodes, pods, daemonsets, deployments)
    assert not health.healthy
    assert health.nodes[1].missing == [
        "agent cilium-worker0 not on hostNetwork",
        "agent IP 10.4.0.9 is not the node's InternalIP 192.168.1.14",
    ]
    assert health.nodes[0].missing == []


def test_node_without_an_agent_and_a_daemonset_short_of_it():
    nodes, pods, _, deployments = healthy_cluster()
    health = judge(nodes, pods[:1], [daemonset(desired=1, updated=1, ready=1)], deployments)
    assert not health.healthy
    assert health.nodes[1].missing == ["no cilium agent pod scheduled"]
    assert health.problems == ["DaemonSet kube-system/cilium wants 1 pods for 2 nodes"]


def test_missing_operator_and_unobserved_generation_are_problems():
    nodes, pods, _, _ = healthy_cluster()
    health = judge(nodes, pods, [daemonset(generation=2, observed=1)], [], namespace="cilium")
    assert health.problems == [
        "Deployment cilium/cilium-operator does not exist",
        "DaemonSet cilium/cilium: generation 2 not yet observed by its controller",
    ]
    assert not health.healthy


def test_a_workload_not_caught_up_is_named_with_its_counts():
    nodes, pods, daemonsets, _ = healthy_cluster()
    health = judge(nodes, pods, daemonsets, [deployment(replicas=2, updated=2, ready=1)])
    assert health.problems == [
        "Deployment kube-system/cilium-operator: 2 desired, 2 updated, 1 ready"
    ]


def test_crash_looping_agent_is_failing_not_just_unready():
    nodes, pods, daemonsets, deployments = healthy_cluster()
    pods[0] = agent(
        "cilium-control0", "control0", "192.168.1.11", ready=False, waiting="CrashLoopBackOff"
    )
    health = judge(nodes, pods, daemonsets, deployments)
    assert health.failing == [
        "pod cilium-control0 on control0 container cilium-agent: CrashLoopBackOff"
    ]
    assert health.failing[0] in health.problems
    assert health.nodes[0].missing == ["agent cilium-control0 not ready (Running)"]


def finished(name, phase="Failed", reason="Evicted", owner=None, template_hash=None):
    """A pod of the release that ran and ended (evicted, or done)."""
    pod = {
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "cilium"}},
        "spec": {"nodeName": "worker0"},
        "status": {"phase": phase, "reason": reason},
    }
    if owner:
        kind, _, owner_name = owner.partition("/")
        pod["metadata"]["ownerReferences"] = [
            {"kind": kind, "name": owner_name, "controller": True}
        ]
    if template_hash:
        pod["metadata"]["labels"]["pod-template-hash"] = template_hash
    return pod


def test_failed_pod_the_release_does_not_replace_is_failing_on_its_node():
    nodes, pods, daemonsets, deployments = healthy_cluster()
    health = judge(nodes, pods + [finished("cilium-envoy-x")], daemonsets, deployments)
    assert health.failing == ["pod cilium-envoy-x on worker0 failed (Evicted)"]
    assert not health.healthy


def test_evicted_pod_beside_its_ready_deployment_does_not_block_health():
    """The issue's case: an Evicted cilium-operator pod beside a Deployment that is all ready."""
    nodes, pods, daemonsets, _ = healthy_cluster()
    evicted = finished(
        "cilium-operator-5d9c-x2x", owner="ReplicaSet/cilium-operator-5d9c", template_hash="5d9c"
    )
    health = judge(
        nodes, pods + [evicted], daemonsets, [deployment(replicas=2, updated=2, ready=2)]
    )
    assert health.failing == [] and health.problems == []
    assert health.healthy


def test_evicted_pod_of_a_workload_not_yet_ready_waits_rather_than_fails():
    nodes, pods, _, deployments = healthy_cluster()
    evicted = finished("cilium-xyz", owner="DaemonSet/cilium")
    health = judge(nodes, pods + [evicted], [daemonset(ready=1)], deployments)
    assert health.failing == []
    assert health.problems == ["DaemonSet kube-system/cilium: 2 desired, 2 updated, 1 ready"]
    assert not health.healthy


def test_succeeded_pod_does_not_block_health():
    nodes, pods, daemonsets, deployments = healthy_cluster()
    done = finished("hubble-generate-certs-abc", phase="Succeeded", reason=None)
    assert judge(nodes, pods + [done], daemonsets, deployments).healthy


def test_a_replicaset_of_another_name_is_not_the_deployments():
    nodes, pods, daemonsets, deployments = healthy_cluster()
    evicted = finished("other-5d9c-x", owner="ReplicaSet/other-5d9c", template_hash="5d9c")
    health = judge(nodes, pods + [evicted], daemonsets, deployments)
    assert health.failing == ["pod other-5d9c-x on worker0 failed (Evicted)"]


def test_progress_names_what_is_still_missing():
    nodes, pods, daemonsets, deployments = healthy_cluster()
    pods[1] = agent("cilium-worker0", "worker0", "192.168.1.14", ready=False, phase="Pending")
    health = judge(nodes, pods, [daemonset(ready=1)], deployments)
    assert health.progress() == (
        "agents ready 1/2, nodes ready 2/2, cilium-operator 1/1; waiting for "
        "worker0: agent cilium-worker0 not ready (Pending); "
        "DaemonSet kube-system/cilium: 2 desired, 2 updated, 1 ready"
    )


def test_a_ready_agent_is_preferred_when_a_rollout_leaves_two_on_a_node():
    nodes, pods, daemonsets, deployments = healthy_cluster()
    old = agent("cilium-old", "worker0", "192.168.1.14", ready=False, phase="Pending")
    health = judge(nodes, [pods[0], old, pods[1]], daemonsets, deployments)
    assert health.nodes[1].agent == "cilium-worker0"
    assert health.healthy


def test_node_not_ready_and_agents_on_unknown_nodes():
    nodes, pods, daemonsets, deployments = healthy_cluster()
    nodes[0] = node("control0", "192.168.1.11", ready=False)
    stray = agent("cilium-ghost", "ghost", "192.168.1.99")
    health = judge(nodes, pods + [stray], daemonsets, deployments)
    assert health.nodes[0].missing == ["node not Ready"]
    assert health.problems == ["agent pods on unknown node ghost"]
    assert health.as_dict()["nodes_ready"] == 1


def test_a_cluster_without_nodes_is_not_healthy():
    health = judge([], [], [daemonset(desired=0, updated=0, ready=0)], [deployment()])
    assert health.problems == ["the cluster has no nodes"]
    assert not health.healthy


def test_objects_with_missing_fields_are_judged_not_crashed_on():
    """A node just registered and a pod just scheduled have no status to speak of yet."""
    bare_node = {"metadata": {"name": "worker1"}}
    bare_pod = {
        "metadata": {"name": "cilium-new", "labels": {"k8s-app": "cilium"}},
        "spec": {"nodeName": "worker1"},
    }
    health = judge([bare_node], [bare_pod], [{"metadata": {"name": "cilium"}}], [])
    assert health.nodes[0].internal_ip is None
    assert health.nodes[0].missing == [
        "agent cilium-new not ready (Pending)",
        "agent cilium-new not on hostNetwork",
        "node not Ready",
    ]
    assert "Deployment kube-system/cilium-operator does not exist" in health.problems

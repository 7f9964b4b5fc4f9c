"""
restart-pods against a real API server (local_control_plane.py): pods started before Cilium's
agents, owned by real controllers (a Deployment, a StatefulSet) or by nothing; kwok plays the
kubelets (the stand-in) and gives each pod an address from its node's pod CIDR.
"""

from __future__ import annotations

import json
import time

from click.testing import CliRunner
from conftest import wait_for

from cilium_lab.cli import cli
from cilium_lab.cluster import verify


def running(cluster, namespace: str, count: int):
    return wait_for(
        lambda: (
            len(
                [
                    p
                    for p in cluster.core.list_namespaced_pod(namespace).items
                    if p.status.phase == "Running"
                    and p.status.pod_ip
                    and not p.metadata.deletion_timestamp
                ]
            )
            == count
        ),
        f"{count} pods running in {namespace}",
    )


def old_cni_lab(cluster, namespace, cilium):
    """Before Cilium: a Deployment, a StatefulSet and a bare pod run; then Cilium's agents start."""
    container = [{"name": "app", "image": "app"}]
    cluster.apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": container},
                },
            },
        },
    )
    cluster.apps.create_namespaced_stateful_set(
        namespace,
        {
            "metadata": {"name": "db"},
            "spec": {
                "replicas": 1,
                "serviceName": "db",
                "selector": {"matchLabels": {"app": "db"}},
                "template": {
                    "metadata": {"labels": {"app": "db"}},
                    "spec": {"containers": container},
                },
            },
        },
    )
    cluster.core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "bare", "labels": {"app": "bare"}},
            "spec": {"containers": container},
        },
    )
    running(cluster, namespace, 4)
    # Start times have a resolution of one second: the agents must come strictly later.
    time.sleep(1.1)
    cilium.agents()
    cilium.operator()
    wait_for(lambda: verify.snapshot(cluster, namespace).healthy, "Cilium healthy")
    running(cluster, namespace, 4 + 3 + 2)


def names(cluster, namespace):
    return {
        p.metadata.name
        for p in cluster.core.list_namespaced_pod(namespace).items
        if not p.metadata.deletion_timestamp
    }


def restart_pods(kubeconfig, namespace, *args):
    return CliRunner().invoke(
        cli, ["restart-pods", "--kubeconfig", str(kubeconfig), "--namespace", namespace, *args]
    )


def test_lists_without_yes_and_changes_nothing(kubeconfig, cluster, namespace, cilium):
    old_cni_lab(cluster, namespace, cilium)
    before = names(cluster, namespace)
    result = restart_pods(kubeconfig, namespace, "-o", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    ours = lambda pods: sorted(
        p["name"].rsplit("-", 2)[0] if p["name"].startswith("web-") else p["name"]
        for p in pods
        if p["namespace"] == namespace
    )
    assert ours(report["owned"]) == ["db-0", "web", "web"]
    assert ours(report["unowned"]) == ["bare"]
    assert report["deleted"] == []
    assert names(cluster, namespace) == before


def test_yes_deletes_the_owned_old_pods_and_their_controllers_recreate_them(
    kubeconfig, cluster, namespace, cilium
):
    old_cni_lab(cluster, namespace, cilium)
    old_web = {n for n in names(cluster, namespace) if n.startswith("web-")}
    old_db = cluster.core.read_namespaced_pod("db-0", namespace).metadata.uid
    result = restart_pods(kubeconfig, namespace, "--yes")
    assert result.exit_code == 0, result.output
    assert f"not deleted, no controller recreates it: {namespace}/bare" in result.output

    # The Deployment and the StatefulSet bring their pods back, started after the agents.
    wait_for(
        lambda: cluster.core.read_namespaced_pod("db-0", namespace).metadata.uid != old_db,
        "db-0 recreated",
    )
    running(cluster, namespace, 9)
    new_web = {n for n in names(cluster, namespace) if n.startswith("web-")}
    assert len(new_web) == 2 and not new_web & old_web
    assert "bare" in names(cluster, namespace)

    again = json.loads(restart_pods(kubeconfig, namespace, "--yes", "-o", "json").output)
    assert [p for p in again["deleted"] if p["namespace"] == namespace] == []
    assert [p["name"] for p in again["unowned"] if p["namespace"] == namespace] == ["bare"]


def test_ip_outside_ciliums_cidrs_is_old_even_if_started_later(
    kubeconfig, cluster, namespace, cilium, ciliumnode_crd
):
    old_cni_lab(cluster, namespace, cilium)
    cluster.core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "late"},
            "spec": {"nodeName": "worker0", "containers": [{"name": "app", "image": "app"}]},
        },
    )
    late = wait_for(
        lambda: cluster.core.read_namespaced_pod("late", namespace).status.pod_ip, "late's address"
    )
    assert late.startswith("10.4.")
    # Cilium's IPAM hands worker0 a CIDR of its own: every address outside it is the old CNI's.
    cluster.custom.create_cluster_custom_object(
        "cilium.io",
        "v2",
        "ciliumnodes",
        {
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumNode",
            "metadata": {"name": "worker0"},
            "spec": {"ipam": {"podCIDRs": ["10.0.1.0/24"]}},
        },
    )
    try:
        result = restart_pods(kubeconfig, namespace, "-o", "json")
        unowned = {p["name"]: p["reason"] for p in json.loads(result.output)["unowned"]}
        assert f"IP {late} is outside Cilium's pod CIDRs 10.0.1.0/24" in unowned["late"]
    finally:
        cluster.custom.delete_cluster_custom_object("cilium.io", "v2", "ciliumnodes", "worker0")


def test_only_the_agents_in_ciliums_namespace_count(kubeconfig, cluster, namespace, cilium):
    """Agents are Cilium's pods in the namespace given (--namespace): pods labelled like them
    elsewhere do not make the old CNI's pods look new."""
    old_cni_lab(cluster, namespace, cilium)
    ours = lambda report: {
        p["name"]: p["reason"]
        for p in report["owned"] + report["unowned"]
        if p["namespace"] == namespace
    }
    here = ours(json.loads(restart_pods(kubeconfig, namespace, "-o", "json").output))
    assert all("before the Cilium agent on" in reason for reason in here.values()), here
    elsewhere = ours(json.loads(restart_pods(kubeconfig, "no-cilium-here", "-o", "json").output))
    assert set(elsewhere) == set(here)
    assert all("no Cilium agent is ready on" in reason for reason in elsewhere.values()), elsewhere

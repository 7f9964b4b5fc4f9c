"""
The cluster operations, pyinfra style: facts in, commands out (tests/pyinfra_fixtures.py).
"""

from __future__ import annotations

import sys

import pytest
from pyinfra_fixtures import run_operation

from facts.cluster_phase import (
    CiliumHealth,
    CiliumRelease,
    HelmRepository,
    InstalledRelease,
    OldCniPods,
)
from operations.cluster_phase import (
    cilium_healthy,
    cilium_release,
    cilium_release_absent,
    helm_repository,
    old_cni_pods_restarted,
)

VALUES = {"kubeProxyReplacement": True, "k8sServicePort": 6443}
RELEASE_ARGS = dict(
    release="cilium",
    namespace="kube-system",
    chart="cilium/cilium",
    version="1.16.5",
    values=VALUES,
    kubeconfig="/k/config",
    context="lab",
)


def release_fact(matches, changes=(), kind="repo"):
    return {
        "helm": "/usr/bin/helm",
        "matches": matches,
        "changes": list(changes),
        "installed": {"exists": True, "status": "deployed", "chart": "cilium", "version": "1.16.5"},
        "desired": {"kind": kind},
    }


def test_release_matching_runs_nothing():
    commands, host = run_operation(
        cilium_release, {CiliumRelease: release_fact(True)}, **RELEASE_ARGS
    )
    assert commands == []
    assert host.noops == [
        "release kube-system/cilium is deployed with chart cilium 1.16.5 and the values"
    ]


@pytest.mark.parametrize(
    ("chart", "kind", "cluster", "where"),
    [
        ("cilium/cilium", "repo", {}, " --kubeconfig /k/config --kube-context lab"),
        # An OCI reference needs no repository and is pinned like a repository chart.
        ("oci://quay.io/cilium/charts/cilium", "oci", {"kubeconfig": None, "context": None}, ""),
    ],
)
def test_release_differing_runs_one_upgrade_with_values_on_stdin(chart, kind, cluster, where):
    commands, _ = run_operation(
        cilium_release,
        {CiliumRelease: release_fact(False, ["chart version 1.16.4 -> 1.16.5"], kind=kind)},
        **{**RELEASE_ARGS, "chart": chart, **cluster},
    )
    assert commands == [
        "printf '%s' '{\"k8sServicePort\":6443,\"kubeProxyReplacement\":true}' | /usr/bin/helm upgrade "
        f"--install cilium {chart} --namespace kube-system --version 1.16.5 --values - --description 'cilium-lab: the release as the group data declares it'{where}"
        + half_migrated("installed")
    ]


def test_packaged_chart_takes_its_own_version():
    # A .tgz carries its own version; the release fact checked the pinned one against it.
    commands, _ = run_operation(
        cilium_release,
        {CiliumRelease: release_fact(False, ["install cilium in kube-system"], kind="path")},
        **{**RELEASE_ARGS, "chart": "/srv/cilium-1.16.5.tgz"},
    )
    assert (
        len(commands) == 1
        and "/srv/cilium-1.16.5.tgz" in commands[0]
        and "--version" not in commands[0]
    )


def test_repository_added_updated_or_left():
    base = {
        "helm": "helm",
        "kind": "repo",
        "needed": True,
        "present": True,
        "url_matches": True,
        "version_cached": True,
    }
    args = dict(
        chart="cilium/cilium",
        version="1.16.5",
        repo_name="cilium",
        repo_url="https://helm.cilium.io/",
    )
    assert run_operation(helm_repository, {HelmRepository: base}, **args)[0] == []
    assert run_operation(
        helm_repository, {HelmRepository: dict(base, version_cached=False)}, **args
    )[0] == ["helm repo update cilium"]
    assert run_operation(helm_repository, {HelmRepository: dict(base, present=False)}, **args)[
        0
    ] == ["helm repo add cilium https://helm.cilium.io/"]
    assert run_operation(helm_repository, {HelmRepository: dict(base, url_matches=False)}, **args)[
        0
    ] == ["helm repo add --force-update cilium https://helm.cilium.io/"]
    assert (
        run_operation(helm_repository, {HelmRepository: dict(base, needed=False)}, **args)[0] == []
    )


def test_healthy_runs_nothing_else_waits():
    assert (
        run_operation(
            cilium_healthy,
            {CiliumHealth: {"healthy": True, "nodes": [{}] * 6}},
            namespace="kube-system",
        )[0]
        == []
    )
    commands, _ = run_operation(
        cilium_healthy,
        {CiliumHealth: {"healthy": False, "nodes": [], "agents_ready": 0}},
        namespace="kube-system",
        timeout=300,
    )
    assert commands == [
        f"{sys.executable} -m cilium_lab verify --wait --timeout 300 --namespace kube-system"
        + half_migrated("healthy")
    ]


def half_migrated(what):
    """A failure in the cluster phase says where the migration stopped and the two ways on."""
    return (
        " || { echo 'cilium-lab: the migration stopped half-way: the nodes run without kube-proxy and "
        f"their old CNI configurations, and Cilium is not {what}. Fix what is said above and run the "
        "deploy again, or go back with deploys/rollback.py.' >&2; exit 1; }"
    )


PODS_ARGS = dict(release="cilium", namespace="kube-system", timeout=300)
RESTART = (
    f"{sys.executable} -m cilium_lab restart-pods --yes --release cilium --timeout 300 "
    "--namespace kube-system"
)
NOT_SERVED = "serving the pods named above yet: they keep their old addresses"


def old_pod(name, action, owner=None, advice=None):
    pod = {
        "namespace": "default",
        "name": name,
        "node": "worker0",
        "reason": "r",
        "owner": owner,
        "action": action,
    }
    return dict(pod, advice=advice) if advice else pod


def test_old_pods_evicted_only_when_a_controller_recreates_some():
    bare = old_pod("bare", "unowned", advice="pod default/bare ...: recreate it yourself")
    commands, host = run_operation(
        old_cni_pods_restarted, {OldCniPods: {"restart": [], "left": [bare]}}, **PODS_ARGS
    )
    assert commands == []
    assert host.noops == ["no pod from the old CNI for a controller to recreate"]
    web = old_pod("web-1", "evict", owner="ReplicaSet/web")
    commands, _ = run_operation(
        old_cni_pods_restarted, {OldCniPods: {"restart": [web], "left": [bare]}}, **PODS_ARGS
    )
    assert commands == [RESTART + half_migrated(NOT_SERVED)]


def test_release_removed_only_when_helm_has_it():
    args = dict(
        release="cilium",
        namespace="kube-system",
        kubeconfig="/k/config",
        context="lab",
        extra_args=["--wait"],
    )
    commands, host = run_operation(
        cilium_release_absent,
        {InstalledRelease: {"helm": "/usr/bin/helm", "installed": {"exists": False}}},
        **args,
    )
    assert commands == []
    assert host.noops == ["no release kube-system/cilium"]
    installed = {"exists": True, "status": "deployed", "chart": "cilium", "version": "1.16.5"}
    commands, _ = run_operation(
        cilium_release_absent,
        {InstalledRelease: {"helm": "/usr/bin/helm", "installed": installed}},
        **args,
    )
    assert commands == [
        "/usr/bin/helm uninstall cilium --namespace kube-system --kubeconfig /k/config "
        "--kube-context lab --wait"
    ]


def test_operations_use_the_preflights_snapshot_until_one_changes_the_cluster():
    """The preflight's one ClusterState read serves the cluster operations of a no-change run;
    once an operation changes the cluster, the next ones read their own facts afresh."""
    from pyinfra_fixtures import FakeHost

    from facts.cluster_phase import ClusterState
    from operations.cluster_read import ClusterRead

    repo = {
        "helm": "helm",
        "kind": "repo",
        "needed": True,
        "present": True,
        "url_matches": True,
        "version_cached": True,
    }
    unhealthy = {"healthy": False, "agents_ready": 0, "nodes": [{}] * 6}
    host = FakeHost({CiliumHealth: {"healthy": True, "nodes": [{}] * 6}})
    repo_args = dict(
        chart="cilium/cilium",
        version="1.16.5",
        repo_name="cilium",
        repo_url="https://helm.cilium.io/",
    )
    read = ClusterRead(**{**RELEASE_ARGS, **repo_args, "extra_args": [], "takeover": False})
    preflight = FakeHost(
        {
            ClusterState: {
                "repo": repo,
                "release": release_fact(False, ["install cilium in kube-system"]),
                "health": unhealthy,
                "pods": {"restart": [], "left": []},
            }
        }
    )
    read.read(preflight)
    assert [(cls, args) for cls, args in preflight.fact_calls] == [(ClusterState, read.args)]

    # Read for other arguments, the snapshot is not used: the operation reads its own fact.
    other = FakeHost({HelmRepository: repo})
    other_read = ClusterRead(**{**repo_args, "version": "1.16.4"})
    other_read.read(FakeHost({ClusterState: {"repo": repo}}))
    run_operation(helm_repository, {}, host=other, cluster_read=other_read, **repo_args)
    assert [cls for cls, _ in other.fact_calls] == [HelmRepository]

    assert run_operation(helm_repository, {}, host=host, cluster_read=read, **repo_args)[0] == []
    assert (
        len(
            run_operation(
                cilium_release, {}, host=host, cluster_read=read, **{**RELEASE_ARGS, **repo_args}
            )[0]
        )
        == 1
    )
    assert host.fact_calls == []  # both from the snapshot
    # The release changed: the wait runs whatever the snapshot said (it is stale), reading nothing.
    commands = run_operation(
        cilium_healthy, {}, host=host, cluster_read=read, namespace="kube-system"
    )[0]
    assert len(commands) == 1 and " verify --wait " in commands[0]
    assert host.fact_calls == []
    # The next operation reads its own fact afresh.
    host.facts[OldCniPods] = {"restart": [], "left": []}
    assert (
        run_operation(
            old_cni_pods_restarted,
            {},
            host=host,
            cluster_read=read,
            **{**PODS_ARGS, "kubeconfig": "/k/config", "context": "lab"},
        )[0]
        == []
    )
    assert [cls for cls, _ in host.fact_calls] == [OldCniPods]


def test_a_no_change_run_takes_the_pods_from_the_preflights_read():
    from pyinfra_fixtures import FakeHost

    from facts.cluster_phase import ClusterState
    from operations.cluster_read import ClusterRead

    read = ClusterRead(**RELEASE_ARGS)
    web = old_pod("web-1", "evict", owner="ReplicaSet/web")
    read.read(FakeHost({ClusterState: {"pods": {"restart": [web], "left": []}}}))
    host = FakeHost({})
    args = {**PODS_ARGS, "kubeconfig": "/k/config", "context": "lab"}
    commands = run_operation(old_cni_pods_restarted, {}, host=host, cluster_read=read, **args)[0]
    assert host.fact_calls == []
    assert commands == [
        RESTART + " --kubeconfig /k/config --context lab" + half_migrated(NOT_SERVED)
    ]


def test_health_is_read_when_the_release_did_not_change():
    """Nothing installed in this run: the wait runs only when Cilium is not healthy."""
    healthy = {"healthy": True, "nodes": [{}] * 6}
    commands, host = run_operation(cilium_healthy, {CiliumHealth: healthy}, namespace="kube-system")
    assert commands == [] and host.noops == ["Cilium is healthy on all 6 nodes"]
    unhealthy = {"healthy": False, "agents_ready": 5, "nodes": [{}] * 6}
    commands, _ = run_operation(cilium_healthy, {CiliumHealth: unhealthy}, namespace="kube-system")
    assert len(commands) == 1 and " verify --wait " in commands[0]

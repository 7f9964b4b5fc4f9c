"""
The deploy's local step (deploys/cilium.py and deploys/rollback.py on an inventory with only
``@local``), run by pyinfra's CLI with the real helm, against a real API server with real
controllers (local_control_plane.py), installing Cilium's real chart from a real helm
repository on loopback. kwok plays the kubelets (the stand-in: no real kubelet or Cilium image
runs here), so Cilium's pods run without a data plane.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

from conftest import CHART_VERSION, REPO, release_secrets

VALUES = {
    "kubeProxyReplacement": True,
    "k8sServiceHost": "kubernetes",
    "k8sServicePort": 6443,
    "cgroup": {"autoMount": {"enabled": False}, "hostRoot": "/sys/fs/cgroup"},
}


def write_inventory(directory, kubeconfig, repo_url, **data):
    directory.mkdir(parents=True, exist_ok=True)
    import shutil

    shutil.copytree(
        REPO / "inventories" / "group_data", directory / "group_data", dirs_exist_ok=True
    )
    host_data = {
        "kubeconfig": str(kubeconfig),
        "helm_repo_url": repo_url,
        "cilium_chart_version": CHART_VERSION,
        "cilium_wait_timeout": 60,
        "host_routes_sudo": False,
        **data,
    }
    inventory = directory / "inventory.py"
    inventory.write_text(f"local = [('@local', {host_data!r})]\n")
    return inventory


def pyinfra(env, inventory, *args, deploy="deploys/cilium.py"):
    return subprocess.run(
        [sys.executable, "-m", "pyinfra", *args, str(inventory), deploy],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def helm_values(env, kubeconfig) -> dict:
    values = subprocess.run(
        [
            "helm",
            "get",
            "values",
            "cilium",
            "-n",
            "kube-system",
            "-o",
            "json",
            "--kubeconfig",
            str(kubeconfig),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(values.stdout)


def test_installs_once_then_changes_nothing(
    tmp_path, kubeconfig, cluster, chart_repo, helm_env, no_release_afterwards
):
    inventory = write_inventory(tmp_path, kubeconfig, chart_repo)

    dry = pyinfra(helm_env, inventory, "--dry")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "install cilium in kube-system" in dry.stdout + dry.stderr
    assert release_secrets(cluster) == []  # --dry only read

    first = pyinfra(helm_env, inventory, "-y")
    output = first.stdout + first.stderr
    assert first.returncode == 0, output
    assert release_secrets(cluster) == ["sh.helm.release.v1.cilium.v1"]
    cm = cluster.core.read_namespaced_config_map("cilium-config", "kube-system")
    assert cm.data["kube-proxy-replacement"] == "true"
    agent = cluster.apps.read_namespaced_daemon_set(
        "cilium", "kube-system"
    ).spec.template.spec.containers[0]
    env = {e.name: e.value for e in agent.env or []}
    assert (env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"]) == (
        "kubernetes",
        "6443",
    )
    daemonsets = {
        d.metadata.name for d in cluster.apps.list_namespaced_daemon_set("kube-system").items
    }
    assert {"cilium", "cilium-envoy"} <= daemonsets
    # cgroup.autoMount.enabled=false reached the chart (the seed's "automount" is ignored by it).
    init = cluster.apps.read_namespaced_daemon_set("cilium", "kube-system").spec.template.spec
    assert "mount-cgroup" not in {c.name for c in init.init_containers or []}

    second = pyinfra(helm_env, inventory, "-y")
    output = second.stdout + second.stderr
    assert second.returncode == 0, output
    assert release_secrets(cluster) == ["sh.helm.release.v1.cilium.v1"]  # no new revision
    # The four cluster operations and the two points where the chapter's parts meet.
    assert output.count("[@local] No changes") == 6, output

    # A changed value: --dry lists the upgrade and changes nothing; the run makes one revision.
    changed_values = {**VALUES, "k8sServicePort": 16443}
    changed = write_inventory(
        tmp_path / "changed", kubeconfig, chart_repo, cilium_values=changed_values
    )
    dry = pyinfra(helm_env, changed, "--dry")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "release kube-system/cilium: value k8sServicePort: 6443 -> 16443" in dry.stderr
    assert release_secrets(cluster) == ["sh.helm.release.v1.cilium.v1"]
    third = pyinfra(helm_env, changed, "-y")
    assert third.returncode == 0, third.stdout + third.stderr
    assert release_secrets(cluster) == [
        "sh.helm.release.v1.cilium.v1",
        "sh.helm.release.v1.cilium.v2",
    ]
    assert helm_values(helm_env, kubeconfig) == changed_values


def test_rollback_uninstalls_once_then_changes_nothing(
    tmp_path, kubeconfig, cluster, chart_repo, helm_env, no_release_afterwards
):
    """deploys/rollback.py's local step with the default ``helm uninstall --wait``: it returns
    once the agents are gone, and a second rollback runs no helm command."""
    inventory = write_inventory(tmp_path, kubeconfig, chart_repo)
    install = pyinfra(helm_env, inventory, "-y")
    assert install.returncode == 0, install.stdout + install.stderr
    assert release_secrets(cluster) == ["sh.helm.release.v1.cilium.v1"]

    dry = pyinfra(helm_env, inventory, "--dry", deploy="deploys/rollback.py")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "uninstall release kube-system/cilium" in dry.stderr
    assert release_secrets(cluster) == ["sh.helm.release.v1.cilium.v1"]

    first = pyinfra(helm_env, inventory, "-y", deploy="deploys/rollback.py")
    assert first.returncode == 0, first.stdout + first.stderr
    assert release_secrets(cluster) == []
    assert not [
        d
        for d in cluster.apps.list_namespaced_daemon_set("kube-system").items
        if d.metadata.name.startswith("cilium")
    ]
    assert not cluster.core.list_namespaced_pod(
        "kube-system", label_selector="k8s-app=cilium"
    ).items

    second = pyinfra(helm_env, inventory, "-y", deploy="deploys/rollback.py")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "[@local] No changes" in second.stdout + second.stderr


def test_rollback_without_helm_changes_nothing(tmp_path, kubeconfig, chart_repo, helm_env):
    inventory = write_inventory(tmp_path, kubeconfig, chart_repo)
    env = dict(helm_env, PATH="/nonexistent")
    run = pyinfra(env, inventory, "-y", deploy="deploys/rollback.py")
    assert run.returncode != 0
    assert "preflight failed on @local" in run.stdout + run.stderr


def test_cilium_never_healthy_says_where_the_migration_stopped(
    tmp_path, kubeconfig, cluster, chart_repo, helm_env, extra_nodes, no_release_afterwards
):
    """helm installs, but one node's kubelet is gone, so its agent never runs: the wait times out
    with a per-node report, the run fails, and it says the nodes are left half-way and what to do."""
    extra_nodes("worker2", "192.168.1.16", "10.6.0.0/16", kubelet=False)
    inventory = write_inventory(tmp_path, kubeconfig, chart_repo, cilium_wait_timeout=5)
    run = pyinfra(helm_env, inventory, "-y")
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    assert release_secrets(cluster) == ["sh.helm.release.v1.cilium.v1"]
    report = [line for line in output.splitlines() if re.search(r"\]\s+worker2\s", line)]
    assert report and "node not Ready" in report[0], output
    assert "the migration stopped half-way" in output and "deploys/rollback.py" in output


def test_packaged_chart_installs_once(
    tmp_path, kubeconfig, cluster, charts_dir, chart_repo, helm_env, no_release_afterwards
):
    """cilium_chart as a .tgz: Cilium's own packaged chart, no repository involved."""
    tgz = charts_dir / f"cilium-{CHART_VERSION}.tgz"
    inventory = write_inventory(tmp_path, kubeconfig, chart_repo, cilium_chart=str(tgz))

    first = pyinfra(helm_env, inventory, "-y")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "helm repo add" not in first.stdout + first.stderr
    assert release_secrets(cluster) == ["sh.helm.release.v1.cilium.v1"]

    second = pyinfra(helm_env, inventory, "-y")
    assert second.returncode == 0, second.stdout + second.stderr
    assert release_secrets(cluster) == ["sh.helm.release.v1.cilium.v1"]

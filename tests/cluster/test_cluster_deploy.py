"""
The deploy's local step (deploys/cilium.py on an inventory with only ``@local``), run by
pyinfra with the real helm against the emulated API (see emulator.py), and the stand-in chart
(tests/charts/cilium) in place of cilium/cilium, which cannot be downloaded here.

helm needs ``--disable-openapi-validation`` (given as ``helm_extra_args`` data): the emulator
serves no OpenAPI schema.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time

from kubernetes.client.rest import ApiException

from conftest import CHART, LAB_NODES, REPO, Kubelet


def write_inventory(tmp_path, api, **data):
    shutil.copytree(REPO / "inventories" / "group_data", tmp_path / "group_data")
    host_data = {"kubeconfig": str(api.kubeconfig), "cilium_chart": str(CHART),
                 "helm_extra_args": ["--disable-openapi-validation"], "cilium_wait_timeout": 20,
                 **data}
    inventory = tmp_path / "inventory.py"
    inventory.write_text(f"local = [('@local', {host_data!r})]\n")
    return inventory


def pyinfra(env, inventory, *args):
    return subprocess.run(
        [sys.executable, "-m", "pyinfra", *args, str(inventory), "deploys/cilium.py"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180,
    )


def release_secrets(cluster):
    return sorted(s.metadata.name for s in cluster.core.list_namespaced_secret("kube-system").items
                  if s.metadata.name.startswith("sh.helm.release.v1.cilium."))


def play_kubelet_after_install(kubelet: Kubelet, stop: threading.Event):
    """When helm has created the DaemonSet, do what kubelets and controllers would."""
    while not stop.is_set():
        try:
            kubelet.apps.read_namespaced_daemon_set("cilium", "kube-system")
            break
        except ApiException:
            stop.wait(0.2)
    else:
        return
    for name, ip in LAB_NODES:
        kubelet.agent(name, ip, ready=True)
    kubelet.daemonset_status(3, 3)
    kubelet.operator_status(2)


def test_installs_once_then_changes_nothing(tmp_path, api, cluster, kubelet, helm_env):
    for name, ip in LAB_NODES:
        kubelet.node(name, ip)
    inventory = write_inventory(tmp_path, api)

    dry = pyinfra(helm_env, inventory, "--dry")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "install cilium in kube-system" in dry.stdout + dry.stderr
    assert release_secrets(cluster) == []  # --dry only read

    stop = threading.Event()
    thread = threading.Thread(target=play_kubelet_after_install, args=(kubelet, stop))
    thread.start()
    try:
        first = pyinfra(helm_env, inventory, "-y")
    finally:
        stop.set()
        thread.join()
    assert first.returncode == 0, first.stdout + first.stderr
    assert release_secrets(cluster) == ["sh.helm.release.v1.cilium.v1"]
    cm = cluster.core.read_namespaced_config_map("cilium-config", "kube-system")
    assert cm.data["kube-proxy-replacement"] == "true" and cm.data["k8s-service-host"] == "kubernetes"

    second = pyinfra(helm_env, inventory, "-y")
    assert second.returncode == 0, second.stdout + second.stderr
    assert release_secrets(cluster) == ["sh.helm.release.v1.cilium.v1"]  # no new revision
    output = second.stdout + second.stderr
    assert output.count("[@local] No changes") == 4, output

    # A changed value is an upgrade (revision 2), then quiet again.
    changed = write_inventory(tmp_path / "changed", api,
                              cilium_values={"kubeProxyReplacement": True, "k8sServiceHost": "kubernetes",
                                             "k8sServicePort": 6443})
    third = pyinfra(helm_env, changed, "-y")
    assert third.returncode == 0, third.stdout + third.stderr
    assert release_secrets(cluster) == ["sh.helm.release.v1.cilium.v1", "sh.helm.release.v1.cilium.v2"]
    values = subprocess.run(["helm", "get", "values", "cilium", "-n", "kube-system", "-o", "json",
                             "--kubeconfig", str(api.kubeconfig)], env=helm_env, capture_output=True,
                            text=True, check=True)
    assert json.loads(values.stdout) == {"kubeProxyReplacement": True, "k8sServiceHost": "kubernetes",
                                         "k8sServicePort": 6443}


def test_rollback_uninstalls_once_then_changes_nothing(tmp_path, api, cluster, kubelet, helm_env):
    """deploys/rollback.py's local step: the release goes, and a second rollback runs no helm
    command. Without ``--wait``: helm's watcher waits on the emulator (which stands in for the API
    server) for good."""
    for name, ip in LAB_NODES:
        kubelet.node(name, ip)
    inventory = write_inventory(tmp_path, api, helm_uninstall_args=[])
    install = subprocess.run(
        ["helm", "upgrade", "--install", "cilium", str(CHART), "--namespace", "kube-system",
         "--kubeconfig", str(api.kubeconfig), "--disable-openapi-validation"],
        env=helm_env, capture_output=True, text=True, timeout=120,
    )
    assert install.returncode == 0, install.stderr
    assert release_secrets(cluster) == ["sh.helm.release.v1.cilium.v1"]

    dry = rollback(helm_env, inventory, "--dry")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert "uninstall release kube-system/cilium" in dry.stderr
    assert release_secrets(cluster) == ["sh.helm.release.v1.cilium.v1"]

    first = rollback(helm_env, inventory, "-y")
    assert first.returncode == 0, first.stdout + first.stderr
    assert release_secrets(cluster) == []
    assert "cilium" not in {d.metadata.name for d in cluster.apps.list_namespaced_daemon_set("kube-system").items}

    second = rollback(helm_env, inventory, "-y")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "[@local] No changes" in second.stdout + second.stderr


def test_rollback_without_helm_changes_nothing(tmp_path, api, cluster, kubelet, helm_env):
    inventory = write_inventory(tmp_path, api)
    env = dict(helm_env, PATH="/nonexistent")
    run = rollback(env, inventory, "-y")
    assert run.returncode != 0
    assert "preflight failed on @local" in run.stdout + run.stderr


def rollback(env, inventory, *args):
    return subprocess.run(
        [sys.executable, "-m", "pyinfra", *args, str(inventory), "deploys/rollback.py"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180,
    )


def test_cilium_never_healthy_says_where_the_migration_stopped(tmp_path, api, cluster, kubelet, helm_env):
    """helm installs, but no agent ever runs (nobody plays the kubelet): the wait times out with a
    per-node report, the run fails, and it says the nodes are left half-way and what to do."""
    for name, ip in LAB_NODES:
        kubelet.node(name, ip)
    inventory = write_inventory(tmp_path, api, cilium_wait_timeout=3)
    run = pyinfra(helm_env, inventory, "-y")
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    assert release_secrets(cluster) == ["sh.helm.release.v1.cilium.v1"]
    for name, _ in LAB_NODES:
        assert name in output
    assert "the migration stopped half-way" in output and "deploys/rollback.py" in output


def test_packaged_chart_installs_once(tmp_path, api, cluster, kubelet, helm_env):
    """cilium_chart as a .tgz (made by the real `helm package` from the stand-in chart)."""
    for name, ip in LAB_NODES:
        kubelet.node(name, ip)
    package = subprocess.run(["helm", "package", str(CHART), "--destination", str(tmp_path)],
                             env=helm_env, capture_output=True, text=True, timeout=60)
    assert package.returncode == 0, package.stderr
    (tgz,) = tmp_path.glob("*.tgz")
    inventory = write_inventory(tmp_path, api, cilium_chart=str(tgz))

    stop = threading.Event()
    thread = threading.Thread(target=play_kubelet_after_install, args=(kubelet, stop))
    thread.start()
    try:
        first = pyinfra(helm_env, inventory, "-y")
    finally:
        stop.set()
        thread.join()
    assert first.returncode == 0, first.stdout + first.stderr
    assert release_secrets(cluster) == ["sh.helm.release.v1.cilium.v1"]

    second = pyinfra(helm_env, inventory, "-y")
    assert second.returncode == 0, second.stdout + second.stderr
    assert release_secrets(cluster) == ["sh.helm.release.v1.cilium.v1"]

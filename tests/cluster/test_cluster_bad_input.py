"""
Bad input: one clear line, a non-zero exit, no traceback, and nothing changed in the cluster
(the emulated API, see emulator.py, keeps no helm release). Through the deploy's fact command
(``cilium-lab status --check release``), which runs before any change.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import CHART


def status(env, *args):
    return subprocess.run([sys.executable, "-m", "cilium_lab", "status", "-o", "json", "--check", "release",
                           "--values-json", json.dumps({"kubeProxyReplacement": True}), *args],
                          env=env, capture_output=True, text=True, timeout=120)


def assert_clear_error(result, *expected):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) <= 2, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr


def no_release(api):
    return not [k for k in api.handler.objects.keys() if k[1] and "helm" in k[2]]


def test_helm_missing(api, monkeypatch, tmp_path):
    """No helm on PATH, nor beside the Python that runs cilium-lab."""
    from click.testing import CliRunner

    from cilium_lab.cli import cli

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    result = CliRunner().invoke(cli, ["status", "--check", "release", "--kubeconfig", str(api.kubeconfig),
                                      "--chart", str(CHART)])
    assert result.exit_code == 2
    assert result.output.startswith("cilium-lab: helm is not installed: no `helm` on PATH")
    assert len(result.output.strip().splitlines()) == 1
    assert no_release(api)


def test_kubeconfig_missing(helm_env, tmp_path):
    assert_clear_error(status(helm_env, "--kubeconfig", str(tmp_path / "nope"), "--chart", str(CHART)),
                       f"kubeconfig {tmp_path / 'nope'} does not exist")


def test_kubeconfig_invalid(helm_env, tmp_path):
    bad = tmp_path / "bad"
    bad.write_text("clusters: [\n")
    assert_clear_error(status(helm_env, "--kubeconfig", str(bad), "--chart", str(CHART)),
                       f"kubeconfig {bad} cannot be read as YAML")
    bad.write_text("apiVersion: v1\nkind: Config\nclusters: []\n")
    assert_clear_error(status(helm_env, "--kubeconfig", str(bad), "--chart", str(CHART)), "defines no clusters")


def test_api_server_unreachable(helm_env, tmp_path, api):
    config = api.kubeconfig.read_text().replace(api.url, "http://127.0.0.1:9")
    unreachable = tmp_path / "unreachable"
    unreachable.write_text(config)
    assert_clear_error(status(helm_env, "--kubeconfig", str(unreachable), "--chart", str(CHART)),
                       "cannot reach the API server http://127.0.0.1:9")


def test_chart_version_not_matching(api, helm_env):
    result = status(helm_env, "--kubeconfig", str(api.kubeconfig), "--chart", str(CHART), "--chart-version", "9.9.9")
    assert_clear_error(result, "is version 1.16.5, but cilium_chart_version pins 9.9.9")
    assert no_release(api)


def test_chart_not_found(api, helm_env, tmp_path):
    result = status(helm_env, "--kubeconfig", str(api.kubeconfig), "--chart", str(tmp_path / "no-chart.tgz"))
    assert_clear_error(result, "not found")
    assert no_release(api)


def test_values_key_rejected(api, helm_env):
    result = subprocess.run([sys.executable, "-m", "cilium_lab", "status", "--check", "release",
                             "--kubeconfig", str(api.kubeconfig), "--chart", str(CHART),
                             "--values-json", json.dumps({"kubeProxyReplacment": True})],
                            env=helm_env, capture_output=True, text=True, timeout=120)
    assert_clear_error(result, "helm rejects the values", "kubeProxyReplacment")
    assert no_release(api)


def test_stand_in_chart_renders_ciliums_objects(helm_env, helm_bin):
    """helm template: the stand-in chart's objects carry the names and labels verify relies on."""
    import yaml
    result = subprocess.run([helm_bin, "template", "cilium", str(CHART), "-n", "kube-system",
                             "--set", "kubeProxyReplacement=true", "--set", "k8sServiceHost=kubernetes",
                             "--set", "k8sServicePort=6443", "--set", "cgroup.automount.enabled=false",
                             "--set", "cgroup.hostRoot=/sys/fs/cgroup"],
                            env=helm_env, capture_output=True, text=True, check=True)
    objects = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(result.stdout) if o}
    agent = objects[("DaemonSet", "cilium")]["spec"]["template"]["spec"]
    assert agent["hostNetwork"] is True and agent["tolerations"] == [{"operator": "Exists"}]
    assert objects[("DaemonSet", "cilium")]["spec"]["template"]["metadata"]["labels"]["k8s-app"] == "cilium"
    assert ("Deployment", "cilium-operator") in objects


@pytest.mark.skipif(not os.environ.get("CILIUM_LAB_KUBECONFIG"), reason="set CILIUM_LAB_KUBECONFIG to a real cluster")
def test_real_cluster_verify_reads():
    """Opt-in: against a real cluster, verify (no wait) and restart-pods (list only) only read."""
    kubeconfig = os.environ["CILIUM_LAB_KUBECONFIG"]
    for args in (["verify", "--no-wait", "-o", "json"], ["restart-pods", "-o", "json"]):
        result = subprocess.run([sys.executable, "-m", "cilium_lab", *args, "--kubeconfig", kubeconfig],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode in (0, 1), result.stderr
        json.loads(result.stdout)

"""
Bad input: one clear line, a non-zero exit, no traceback, and nothing changed in the cluster
(a real API server, local_control_plane.py: no helm release appears). Through the deploy's fact
command (``cilium-lab status --check release``), which runs before any change, with Cilium's
real packaged chart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import CHART_VERSION, release_secrets


@pytest.fixture
def chart(charts_dir):
    return charts_dir / f"cilium-{CHART_VERSION}.tgz"


def status(env, *args):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cilium_lab",
            "status",
            "-o",
            "json",
            "--check",
            "release",
            "--values-json",
            json.dumps({"kubeProxyReplacement": True}),
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_clear_error(result, *expected):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) <= 2, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr


def test_helm_missing(kubeconfig, cluster, chart, monkeypatch, tmp_path):
    """No helm on PATH, nor beside the Python that runs cilium-lab."""
    from click.testing import CliRunner

    from cilium_lab.cli import cli

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    result = CliRunner().invoke(
        cli,
        ["status", "--check", "release", "--kubeconfig", str(kubeconfig), "--chart", str(chart)],
    )
    assert result.exit_code == 2
    assert result.output.startswith("cilium-lab: helm is not installed: no `helm` on PATH")
    assert len(result.output.strip().splitlines()) == 1
    assert release_secrets(cluster) == []


def test_kubeconfig_missing(helm_env, tmp_path, chart):
    assert_clear_error(
        status(helm_env, "--kubeconfig", str(tmp_path / "nope"), "--chart", str(chart)),
        f"kubeconfig {tmp_path / 'nope'} does not exist",
    )


def test_kubeconfig_invalid(helm_env, tmp_path, chart):
    bad = tmp_path / "bad"
    bad.write_text("clusters: [\n")
    assert_clear_error(
        status(helm_env, "--kubeconfig", str(bad), "--chart", str(chart)),
        f"kubeconfig {bad} cannot be read as YAML",
    )
    bad.write_text("apiVersion: v1\nkind: Config\nclusters: []\n")
    assert_clear_error(
        status(helm_env, "--kubeconfig", str(bad), "--chart", str(chart)), "defines no clusters"
    )


def test_api_server_unreachable(helm_env, tmp_path, control_plane, chart):
    config = control_plane.kubeconfig.read_text().replace(
        control_plane.server, "https://127.0.0.1:9"
    )
    unreachable = tmp_path / "unreachable"
    unreachable.write_text(config)
    assert_clear_error(
        status(helm_env, "--kubeconfig", str(unreachable), "--chart", str(chart)),
        "cannot reach the API server https://127.0.0.1:9",
    )


def test_chart_version_not_matching(kubeconfig, cluster, helm_env, chart):
    result = status(
        helm_env, "--kubeconfig", str(kubeconfig), "--chart", str(chart), "--chart-version", "9.9.9"
    )
    assert_clear_error(result, f"is version {CHART_VERSION}, but cilium_chart_version pins 9.9.9")
    assert release_secrets(cluster) == []


def test_chart_not_found(kubeconfig, cluster, helm_env, tmp_path):
    result = status(
        helm_env, "--kubeconfig", str(kubeconfig), "--chart", str(tmp_path / "no-chart.tgz")
    )
    assert_clear_error(result, "not found")
    assert release_secrets(cluster) == []


def test_values_key_rejected(kubeconfig, cluster, helm_env, chart):
    """Cilium's chart has a values schema: a misspelt key is refused by helm before anything runs."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cilium_lab",
            "status",
            "--check",
            "release",
            "--kubeconfig",
            str(kubeconfig),
            "--chart",
            str(chart),
            "--values-json",
            json.dumps({"kubeProxyReplacement": "sometimes"}),
        ],
        env=helm_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_clear_error(result, "helm rejects the values", "kubeProxyReplacement")
    assert release_secrets(cluster) == []


def test_auto_service_host_needs_cluster_info(kubeconfig, cluster, helm_env, chart):
    """Like the guide's, this hand-built control plane has no kube-public/cluster-info: Cilium's
    agents could not take the API server's address from it."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cilium_lab",
            "status",
            "--check",
            "release",
            "--kubeconfig",
            str(kubeconfig),
            "--chart",
            str(chart),
            "--values-json",
            json.dumps({"k8sServiceHost": "auto"}),
        ],
        env=helm_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert_clear_error(
        result, "k8sServiceHost is 'auto', but the cluster has no kube-public/cluster-info"
    )
    assert release_secrets(cluster) == []


@pytest.mark.skipif(
    not os.environ.get("CILIUM_LAB_KUBECONFIG"),
    reason="set CILIUM_LAB_KUBECONFIG to a real cluster",
)
def test_real_cluster_verify_reads():
    """Opt-in: against a real cluster, verify (no wait) and restart-pods (list only) only read."""
    kubeconfig = os.environ["CILIUM_LAB_KUBECONFIG"]
    for args in (["verify", "--no-wait", "-o", "json"], ["restart-pods", "-o", "json"]):
        result = subprocess.run(
            [sys.executable, "-m", "cilium_lab", *args, "--kubeconfig", kubeconfig],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode in (0, 1), result.stderr
        json.loads(result.stdout)

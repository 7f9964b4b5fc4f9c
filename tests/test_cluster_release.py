"""The release diff: helm's JSON in (``helm list``, ``helm get values``), what differs from the
wanted chart version and values out, and the chart checked only when something differs. helm's
answers are given; no helm, no API server."""

from __future__ import annotations

import json
import subprocess

import pytest

from cilium_lab.cluster import ClusterError, helm, status

VALUES = {"kubeProxyReplacement": True, "k8sServiceHost": "kubernetes", "k8sServicePort": 6443}


def installed(**change):
    return {
        "exists": True,
        "status": "deployed",
        "chart": "cilium",
        "version": "1.19.6",
        "revision": 2,
        "values": dict(VALUES),
        **change,
    }


def test_the_same_version_and_values_in_another_order_is_no_change():
    reordered = dict(reversed(list(VALUES.items())))
    assert (
        status.release_changes(
            installed(values=reordered), "cilium", "kube-system", "1.19.6", VALUES
        )
        == []
    )


def test_not_installed_is_one_install():
    assert status.release_changes({"exists": False}, "cilium", "kube-system", "1.19.6", VALUES) == [
        "install cilium in kube-system"
    ]


def test_each_difference_is_one_line():
    changes = status.release_changes(
        installed(status="failed", version="1.19.5", values={"kubeProxyReplacement": False}),
        "cilium",
        "kube-system",
        "1.19.6",
        {"kubeProxyReplacement": True},
    )
    assert changes == [
        "release is failed",
        "chart version 1.19.5 -> 1.19.6",
        'values {"kubeProxyReplacement":false} -> {"kubeProxyReplacement":true}',
    ]


def test_no_pinned_version_compares_the_values_only():
    assert (
        status.release_changes(installed(version="1.18.0"), "cilium", "kube-system", None, VALUES)
        == []
    )


def test_helm_without_values_is_the_empty_document():
    """``helm get values`` prints null for a release installed without any."""
    assert status.release_changes(installed(values=None), "cilium", "kube-system", None, {}) == []


def fake_helm(monkeypatch, answers: dict):
    """helm's answers by subcommand: (exit status, stdout, stderr)."""
    calls = []

    def run(helm_path, args, input=None):
        calls.append(args)
        code, out, err = answers[args[0]]
        return subprocess.CompletedProcess([helm_path, *args], code, out, err)

    monkeypatch.setattr(helm, "run", run)
    return calls


def test_helm_list_and_get_values_read_as_the_release(monkeypatch):
    listed = [
        {"name": "cilium-extra", "chart": "cilium-1.0.0", "status": "deployed", "revision": "1"},
        {"name": "cilium", "chart": "cilium-1.19.6", "status": "deployed", "revision": "4"},
    ]
    calls = fake_helm(
        monkeypatch,
        {"list": (0, json.dumps(listed), ""), "get": (0, json.dumps(VALUES), "")},
    )
    found = helm.release("helm", "cilium", "kube-system", "/k/config", "lab")
    assert found == installed(revision=4)
    assert calls[0][-4:] == ["--kubeconfig", "/k/config", "--kube-context", "lab"]
    assert calls[1][:3] == ["get", "values", "cilium"]


def test_no_release_listed_is_not_installed(monkeypatch):
    fake_helm(monkeypatch, {"list": (0, "[]", "")})
    assert helm.release("helm", "cilium", "kube-system")["exists"] is False


def test_helm_that_cannot_list_says_why_in_one_line(monkeypatch):
    fake_helm(
        monkeypatch,
        {"list": (1, "", 'Error: Kubernetes cluster unreachable: Get "https://x": EOF\n')},
    )
    with pytest.raises(ClusterError) as error:
        helm.release("helm", "cilium", "kube-system")
    assert str(error.value) == (
        'helm cannot list releases in kube-system: Kubernetes cluster unreachable: Get "https://x": EOF'
    )


class Cluster:
    server = "https://kubernetes:6443"


@pytest.mark.parametrize(
    ("found", "checked"),
    [(installed(), []), (installed(version="1.19.5"), ["chart_version", "check_values"])],
)
def test_the_chart_and_values_are_checked_only_when_the_release_changes(
    monkeypatch, found, checked
):
    done = []
    monkeypatch.setattr(helm, "find_helm", lambda: "/usr/bin/helm")
    monkeypatch.setattr(helm, "release", lambda *a: found)
    monkeypatch.setattr(helm, "chart_source", lambda helm_path, chart, *a: [chart])
    monkeypatch.setattr(helm, "chart_version", lambda *a: done.append("chart_version") or "1.19.6")
    monkeypatch.setattr(helm, "check_values", lambda *a: done.append("check_values"))

    answer = status.release(Cluster(), "cilium", "kube-system", "cilium/cilium", "1.19.6", VALUES)

    assert done == checked
    assert answer["matches"] is (not checked)
    assert answer["desired"] == {
        "chart": "cilium/cilium",
        "kind": "repo",
        "version": "1.19.6",
        "values": VALUES,
    }
    assert (answer["helm"], answer["server"]) == ("/usr/bin/helm", "https://kubernetes:6443")

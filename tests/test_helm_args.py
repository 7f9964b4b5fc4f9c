"""The helpers both sides of the process boundary share (cilium_lab/cluster/helm_args.py): one
rule for the values document, helm's cluster flags and the chart's kind, and nothing heavy."""

import subprocess
import sys
from pathlib import Path

import pytest

from cilium_lab.cluster import helm
from cilium_lab.cluster.helm_args import chart_kind, helm_cluster_flags, values_document
from operations.cluster_phase import install_command

REPO = Path(__file__).parents[1]


def test_the_deploy_side_imports_no_cluster_client():
    """pyinfra loads the facts and operations for every run: the shared module must not bring in
    the kubernetes client (most of a second) or the rest of cilium_lab."""
    script = (
        "import sys, facts.cluster_phase, operations.cluster_phase, deploys.support.preflight\n"
        "print(sorted(m for m in sys.modules if m.startswith(('kubernetes', 'cilium_lab'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.strip()
        == "['cilium_lab', 'cilium_lab.cluster', 'cilium_lab.cluster.helm_args']"
    )


def test_values_document_is_the_same_text_for_the_same_values():
    assert values_document({"b": 1, "a": {"y": True, "x": None}}) == values_document(
        {"a": {"x": None, "y": True}, "b": 1}
    )
    assert values_document({"a": {"x": None, "y": True}, "b": 1}) == (
        '{"a":{"x":null,"y":true},"b":1}'
    )
    assert values_document(None) == values_document({}) == "{}"


def test_cluster_flags():
    assert helm_cluster_flags(None, None) == []
    assert helm_cluster_flags("/k/config", "lab") == [
        "--kubeconfig",
        "/k/config",
        "--kube-context",
        "lab",
    ]
    assert helm_cluster_flags("~/k", None) == ["--kubeconfig", str(Path("~/k").expanduser())]


@pytest.mark.parametrize(
    ("chart", "kind"),
    [
        ("cilium/cilium", "repo"),
        ("oci://quay.io/cilium/charts/cilium", "oci"),
        ("/srv/charts/cilium", "path"),
        ("./cilium-1.19.6.tgz", "path"),
        ("cilium-1.19.6.tgz", "path"),
    ],
)
def test_install_and_the_reads_agree_on_when_helm_takes_a_version(chart, kind):
    """The install (built in pyinfra's process) and the chart checks (in cilium-lab's) give helm
    --version for the same charts: all but a local chart, which carries its own."""
    assert chart_kind(chart) == kind
    command = install_command("helm", "cilium", chart, "1.19.6", "kube-system", {})
    assert ("--version 1.19.6" in command) == (kind != "path") == helm._versioned([chart])

"""How each kind of chart reference reaches helm: a repository chart, a directory or .tgz, and an
oci:// reference (no OCI registry can run here, so only the commands are checked)."""

import pytest

from cilium_lab.cluster import ClusterError, helm


@pytest.mark.parametrize(
    ("chart", "kind"),
    [
        ("cilium/cilium", "repo"),
        ("oci://quay.io/cilium/charts/cilium", "oci"),
        ("./charts/cilium", "path"),
        ("/srv/charts/cilium-1.16.5.tgz", "path"),
        ("~/charts/cilium", "path"),
    ],
)
def test_chart_kind(chart, kind):
    assert helm.chart_kind(chart) == kind


def test_a_reference_that_is_none_of_them_is_refused():
    with pytest.raises(ClusterError, match="neither repo/chart, a chart directory, a .tgz nor an oci://"):
        helm.chart_kind("cilium")


def test_oci_chart_is_pinned_and_needs_no_repository():
    command = helm.install_command("helm", "cilium", "oci://quay.io/cilium/charts/cilium", "1.16.5",
                                   "kube-system", {"kubeProxyReplacement": True})
    assert command == ("printf '%s' '{\"kubeProxyReplacement\":true}' | helm upgrade --install cilium "
                       "oci://quay.io/cilium/charts/cilium --namespace kube-system --version 1.16.5 --values -")
    assert helm.chart_source("helm", "oci://quay.io/cilium/charts/cilium", "cilium", "https://helm.cilium.io/") == [
        "oci://quay.io/cilium/charts/cilium"]


def test_packaged_chart_takes_its_own_version():
    # A .tgz carries its own version; the pinned one is checked against it before, not passed.
    command = helm.install_command("helm", "cilium", "/srv/cilium-1.16.5.tgz", "1.16.5", "kube-system", {})
    assert "--version" not in command

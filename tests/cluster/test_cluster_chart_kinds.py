"""How each kind of chart reference is told apart: a repository chart, a directory or .tgz, and an
oci:// reference (no OCI registry can run here; the install commands for each are checked in
test_cluster_operations.py)."""

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
    with pytest.raises(
        ClusterError, match="neither repo/chart, a chart directory, a .tgz nor an oci://"
    ):
        helm.chart_kind("cilium")


def test_oci_chart_needs_no_repository():
    assert helm.chart_source(
        "helm", "oci://quay.io/cilium/charts/cilium", "cilium", "https://helm.cilium.io/"
    ) == ["oci://quay.io/cilium/charts/cilium"]

"""
helm's records of a release read through the API (cilium_lab/cluster/helm_records.py) against
helm's own answers (`helm list`, `helm history`, `helm get values`), on a real API server
(local_control_plane.py) with the real helm: installed, upgraded, failed, pending, uninstalled
with its history kept, and the configmap driver. A stand-in chart of one ConfigMap: helm's records
do not depend on what the chart holds.
"""

from __future__ import annotations

import base64

import pytest
from conftest import set_status

from cilium_lab.cluster import ClusterError
from cilium_lab.cluster.helm import release as helm_release
from cilium_lab.cluster.helm_records import ReleaseRecords

NAME = "cilium"


@pytest.fixture
def chart(tmp_path):
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: cilium\nversion: 1.19.6\nappVersion: 1.19.6\n"
    )
    (chart / "templates" / "config.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stand-in}\n"
        "data: {hubble: {{ .Values.hubble | quote }}}\n"
    )
    return chart


def revisions(helm, chart, namespace, *sets, env=None):
    """The release at one revision per entry of ``sets`` (its ``--set`` values): installed with
    the first, upgraded with each next (``env``: more of helm's environment)."""
    for n, values in enumerate(sets):
        args = [arg for value in values for arg in ("--set", value)]
        verb = "upgrade" if n else "install"
        helm(verb, NAME, str(chart), *args, "--namespace", namespace, env=env)


def both(cluster, helm_bin, kubeconfig, namespace):
    """The API's reading and helm's, of the same release."""
    read = ReleaseRecords(cluster, helm_bin, NAME, namespace, str(kubeconfig))
    through_helm = ReleaseRecords(None, helm_bin, NAME, namespace, str(kubeconfig))
    assert read.kind is not None and through_helm.kind is None
    return read, through_helm


def assert_same(read, through_helm, revisions=()):
    assert read.release() == through_helm.release()
    assert read.history() == through_helm.history()
    assert read.first_revision() == through_helm.first_revision()
    for revision in revisions:
        assert read.values(revision) == through_helm.values(revision)


def test_no_release_reads_as_helm_says(cluster, helm_bin, kubeconfig, namespace):
    read, through_helm = both(cluster, helm_bin, kubeconfig, namespace)
    assert_same(read, through_helm)
    assert read.release()["exists"] is False
    assert read.history() == [] and read.first_revision() is None


def test_installed_and_upgraded_read_as_helm_says(
    cluster, helm_bin, kubeconfig, namespace, chart, helm
):
    revisions(helm, chart, namespace, ["hubble=true"], ["hubble=false", "debug.enabled=true"])
    read, through_helm = both(cluster, helm_bin, kubeconfig, namespace)
    assert_same(read, through_helm, revisions=(1, 2))
    found = read.release()
    assert (found["status"], found["revision"], found["chart"], found["version"]) == (
        "deployed",
        2,
        "cilium",
        "1.19.6",
    )
    assert found["values"] == {"hubble": False, "debug": {"enabled": True}}
    assert [e["status"] for e in read.history()] == ["superseded", "deployed"]
    assert read.values(1) == {"hubble": True}


def test_ten_revisions_sort_by_number_not_by_name(
    cluster, helm_bin, kubeconfig, namespace, chart, helm
):
    """v10 sorts before v2 as text: the last revision is the tenth."""
    revisions(helm, chart, namespace, [], *([f"n={n}"] for n in range(2, 11)))
    read, through_helm = both(cluster, helm_bin, kubeconfig, namespace)
    assert_same(read, through_helm, revisions=(1, 10))
    assert read.release()["revision"] == 10 and read.release()["values"] == {"n": 10}
    assert read.first_revision()["revision"] == 1


@pytest.mark.parametrize("status", ["failed", "pending-upgrade", "pending-rollback"])
def test_a_failed_or_pending_last_revision_reads_as_helm_says(
    cluster, helm_bin, kubeconfig, namespace, chart, helm, status
):
    revisions(helm, chart, namespace, [], ["hubble=false"])
    set_status(cluster, 2, status, namespace)
    read, through_helm = both(cluster, helm_bin, kubeconfig, namespace)
    assert_same(read, through_helm, revisions=(1, 2))
    assert read.release()["status"] == status


def test_uninstalled_with_its_history_kept_is_no_release_but_keeps_its_history(
    cluster, helm_bin, kubeconfig, namespace, chart, helm
):
    helm("install", NAME, str(chart), "--namespace", namespace)
    helm("uninstall", NAME, "--keep-history", "--namespace", namespace)
    read, through_helm = both(cluster, helm_bin, kubeconfig, namespace)
    assert_same(read, through_helm, revisions=(1,))
    assert read.release()["exists"] is False
    assert [e["status"] for e in read.history()] == ["uninstalled"]


def test_the_configmap_driver_is_read_where_helm_keeps_it(
    cluster, helm_bin, kubeconfig, namespace, chart, helm, monkeypatch
):
    revisions(
        helm, chart, namespace, ["hubble=true"], ["hubble=false"], env={"HELM_DRIVER": "configmap"}
    )
    set_status(cluster, 2, "pending-upgrade", namespace, kind="configmaps")
    monkeypatch.setenv("HELM_DRIVER", "configmap")
    read, through_helm = both(cluster, helm_bin, kubeconfig, namespace)
    assert read.kind == "configmaps"
    assert_same(read, through_helm, revisions=(1, 2))
    assert read.release()["status"] == "pending-upgrade"
    # Under the default driver the same release is not there, as helm says too.
    monkeypatch.delenv("HELM_DRIVER")
    read, through_helm = both(cluster, helm_bin, kubeconfig, namespace)
    assert_same(read, through_helm)
    assert read.release()["exists"] is False


def test_a_record_not_in_helms_encoding_is_one_line_naming_it(
    cluster, helm_bin, kubeconfig, namespace, chart, helm
):
    helm("install", NAME, str(chart), "--namespace", namespace)
    cluster.core.patch_namespaced_secret(
        f"sh.helm.release.v1.{NAME}.v1",
        namespace,
        {"data": {"release": base64.b64encode(b"not helm's").decode()}},
    )
    read, _ = both(cluster, helm_bin, kubeconfig, namespace)
    with pytest.raises(ClusterError) as raised:
        read.release()
    message = str(raised.value)
    assert f"sh.helm.release.v1.{NAME}.v1 of {namespace}/{NAME}" in message
    assert "helm history" in message and "\n" not in message


def test_a_driver_only_helm_reads_goes_through_helm(
    cluster, helm_bin, kubeconfig, namespace, monkeypatch
):
    """helm's memory driver holds nothing outside one helm process: helm's own answer, an error
    here, is what the reading gives."""
    monkeypatch.setenv("HELM_DRIVER", "memory")
    read = ReleaseRecords(cluster, helm_bin, NAME, namespace, str(kubeconfig))
    assert read.kind is None

    def answer(reader):
        try:
            return reader()
        except ClusterError as error:
            return str(error)

    assert answer(read.release) == answer(
        lambda: helm_release(helm_bin, NAME, namespace, str(kubeconfig))
    )

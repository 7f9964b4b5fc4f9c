"""helm's records of a release (cilium_lab/cluster/helm_records.py): the API's JSON of helm's
Secrets or ConfigMaps in, the release, history and values helm would report out. No helm, no API
server; tests/cluster/test_cluster_helm_records.py holds the same reading against the real helm."""

from __future__ import annotations

import base64
import gzip
import subprocess

import pytest
from helm_record_items import listing, record
from kubernetes.client.rest import ApiException

from cilium_lab.cluster import ClusterError, helm
from cilium_lab.cluster.helm_records import ReleaseRecords, storage


class Api:
    server = "https://kubernetes:6443"

    def __init__(self, answer):
        self.answer, self.requests = answer, []

    def get(self, path, **query):
        self.requests.append((path, query))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def records(answer):
    return ReleaseRecords(Api(answer), "/usr/bin/helm", "cilium", "kube-system")


def test_one_request_by_label_answers_release_history_and_values():
    api = Api(
        listing(
            record(2, "deployed", config={"hubble": False}, description="Upgrade complete"),
            record(1, "superseded", config={"hubble": True}),
        )
    )
    read = ReleaseRecords(api, "/usr/bin/helm", "cilium", "kube-system")
    assert read.release() == {
        "exists": True,
        "status": "deployed",
        "chart": "cilium",
        "version": "1.19.6",
        "revision": 2,
        "values": {"hubble": False},
    }
    assert [(e["revision"], e["status"], e["chart"]) for e in read.history()] == [
        (1, "superseded", "cilium-1.19.6"),
        (2, "deployed", "cilium-1.19.6"),
    ]
    assert read.first_revision()["updated"] == "2026-11-26T11:40:00.123456789+01:00"
    assert read.values(1) == {"hubble": True}
    assert api.requests == [
        ("/api/v1/namespaces/kube-system/secrets", {"labelSelector": "owner=helm,name=cilium"})
    ]


def test_the_tenth_revision_is_the_last_though_v10_sorts_before_v2_as_text():
    read = records(listing(*(record(n, config={"n": n}) for n in (10, 2, 1, 9))))
    assert read.release()["revision"] == 10 and read.release()["values"] == {"n": 10}
    assert [e["revision"] for e in read.history()] == [1, 2, 9, 10]


@pytest.mark.parametrize(
    ("status", "listed"),
    [
        ("deployed", True),
        ("failed", True),
        ("pending-install", True),
        ("pending-upgrade", True),
        ("pending-rollback", True),
        ("uninstalled", False),
        ("uninstalling", False),
    ],
)
def test_the_release_is_its_last_revision_when_helm_list_shows_it(status, listed):
    read = records(listing(record(1, "superseded"), record(2, status)))
    assert read.release()["exists"] is listed
    assert read.release()["status"] == (status if listed else None)
    assert len(read.history()) == 2  # helm history still shows an uninstalled one kept


def test_no_records_is_no_release_and_no_history():
    read = records(listing())
    assert read.release()["exists"] is False
    assert read.history() == [] and read.first_revision() is None


def test_a_release_installed_without_values_has_the_empty_document():
    assert records(listing(record(1, config=None))).release()["values"] == {}


def test_a_revision_helm_does_not_keep_is_one_line():
    with pytest.raises(ClusterError, match="^helm has no revision 3 of kube-system/cilium$"):
        records(listing(record(1))).values(3)


def test_the_configmap_driver_reads_configmaps_with_one_base64(monkeypatch):
    monkeypatch.setenv("HELM_DRIVER", "configmap")
    api = Api(listing(record(1, config={"a": 1}, kind="configmaps")))
    read = ReleaseRecords(api, "/usr/bin/helm", "cilium", "kube-system")
    assert read.release()["values"] == {"a": 1}
    assert api.requests[0][0] == "/api/v1/namespaces/kube-system/configmaps"


@pytest.mark.parametrize(
    ("driver", "kind"),
    [("", "secrets"), ("Secret", "secrets"), ("configmaps", "configmaps"), ("sql", None)],
)
def test_helm_drivers(monkeypatch, driver, kind):
    monkeypatch.setenv("HELM_DRIVER", driver)
    assert storage() == kind


def test_a_driver_only_helm_reads_asks_helm(monkeypatch):
    monkeypatch.setenv("HELM_DRIVER", "sql")
    calls = []

    def run(helm_path, args, input=None):
        calls.append(args[0])
        return subprocess.CompletedProcess(args, 0, "[]", "")

    monkeypatch.setattr(helm, "run", run)
    api = Api(AssertionError("the API is not read"))
    read = ReleaseRecords(api, "/usr/bin/helm", "cilium", "kube-system")
    assert read.release()["exists"] is False and read.history() == []
    assert calls == ["list", "history"] and api.requests == []


def test_an_uncompressed_record_is_read_as_helm_reads_it():
    """helm gunzips only what starts with gzip's magic."""
    item = record(1, config={"a": 1})
    raw = gzip.decompress(base64.b64decode(base64.b64decode(item["data"]["release"])))
    item["data"]["release"] = base64.b64encode(base64.b64encode(raw)).decode()
    assert records(listing(item)).release()["values"] == {"a": 1}


@pytest.mark.parametrize("release", ["not base64!", base64.b64encode(b"plain").decode(), None])
def test_a_record_not_in_helms_encoding_is_one_line_naming_it(release):
    item = record(1)
    item["data"]["release"] = release
    with pytest.raises(ClusterError) as raised:
        records(listing(item)).release()
    assert str(raised.value) == (
        "helm's record sh.helm.release.v1.cilium.v1 of kube-system/cilium cannot be read "
        "(not helm's encoding): check it with `helm history`"
    )


def test_an_api_error_is_one_line_naming_the_server():
    with pytest.raises(ClusterError) as raised:
        records(ApiException(status=403, reason="Forbidden")).release()
    assert str(raised.value) == (
        "helm's records of kube-system/cilium cannot be read on https://kubernetes:6443: "
        "403 Forbidden"
    )

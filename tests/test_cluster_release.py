"""The release diff: helm's JSON in (``helm list``, ``helm get values``), what differs from the
wanted chart version and values out, and the chart checked only when something differs. helm's
answers are given; no helm, no API server."""

from __future__ import annotations

import json
import subprocess

import pytest

from cilium_lab.cluster import ClusterError, helm, status
from cilium_lab.cluster.helm_records import ReleaseRecords

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
        "value kubeProxyReplacement: false -> true",
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

    def __init__(self, namespaces=("kube-system",)):
        self.namespaces = namespaces
        self.gets = []

    def get(self, path, **query):
        from kubernetes.client.rest import ApiException

        self.gets.append(path)
        if path.rsplit("/", 1)[-1] not in self.namespaces:
            raise ApiException(status=404, reason="Not Found")
        return {}


OURS = "cilium-lab: the release as the group data declares it"


@pytest.fixture
def helm_reads(monkeypatch, tmp_path):
    """helm's reads, faked: the release as given, its history, the chart's values; what ran."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    done = []
    found = {"release": installed(), "history": [], "revision_values": {}}
    monkeypatch.setattr(helm, "find_helm", lambda: "/usr/bin/helm")
    # helm's records of the release (helm_records.py, with tests of its own): as given.
    monkeypatch.setattr(ReleaseRecords, "release", lambda self: found["release"])
    monkeypatch.setattr(helm, "chart_source", lambda helm_path, chart, *a: [chart])

    def record(name, answer):
        return lambda *a: done.append(name) or (answer() if callable(answer) else answer)

    monkeypatch.setattr(helm, "chart_metadata", record("chart_metadata", ("cilium", "1.19.6")))
    monkeypatch.setattr(
        helm,
        "chart_values",
        record(
            "chart_values",
            "kubeProxyReplacement: false\nk8sServiceHost: ''\nk8sServicePort: 0\nipam:\n  mode: x\n",
        ),
    )
    monkeypatch.setattr(helm, "check_values", record("check_values", None))
    monkeypatch.setattr(ReleaseRecords, "history", record("history", lambda: found["history"]))
    monkeypatch.setattr(
        ReleaseRecords, "values", record("revision_values", lambda: found["revision_values"])
    )
    return found, done


def read_release(version="1.19.6", values=VALUES, cluster=None, **kwargs):
    return status.release(
        cluster or Cluster(), "cilium", "kube-system", "cilium/cilium", version, values, **kwargs
    )


@pytest.mark.parametrize(
    ("found", "checked"),
    [
        (installed(), []),
        (installed(version="1.19.5"), ["chart_metadata", "chart_values", "check_values"]),
    ],
)
def test_the_chart_and_values_are_checked_only_when_the_release_changes(helm_reads, found, checked):
    helm_reads[0]["release"] = found
    answer = read_release()

    assert helm_reads[1] == checked
    assert answer["matches"] is (not checked)
    assert answer["desired"] == {
        "chart": "cilium/cilium",
        "kind": "repo",
        "version": "1.19.6",
        "values": VALUES,
    }
    assert (answer["helm"], answer["server"]) == ("/usr/bin/helm", "https://kubernetes:6443")


def test_a_second_check_of_the_same_chart_reads_its_keys_from_the_cache(helm_reads):
    helm_reads[0]["release"] = installed(version="1.19.5")
    read_release()
    read_release()
    assert helm_reads[1].count("chart_values") == 1


def test_an_unknown_key_is_refused_before_helm_template(helm_reads):
    helm_reads[0]["release"] = {"exists": False}
    with pytest.raises(
        ClusterError,
        match="key ipam.moed is not a key of chart cilium 1.19.6 \\(did you mean ipam.mode\\?\\)",
    ):
        read_release(values={**VALUES, "ipam": {"moed": "kubernetes"}})
    assert "check_values" not in helm_reads[1]


def test_a_downgrade_is_refused_unless_taken_over(helm_reads):
    helm_reads[0]["release"] = installed(version="1.20.0")
    with pytest.raises(
        ClusterError, match="runs chart cilium 1.20.0, newer than the pinned 1.19.6"
    ):
        read_release()
    assert helm_reads[1] == []  # refused before reading the chart
    answer = read_release(takeover=True)
    assert answer["changes"][0].endswith("taken over, as cilium_release_takeover says")
    assert answer["changes"][1:] == ["chart version 1.20.0 -> 1.19.6"]


def test_one_minor_up_names_each_changed_key(helm_reads):
    helm_reads[0]["release"] = installed(version="1.19.6")
    helm_reads[0]["history"] = [{"revision": 2, "status": "deployed", "description": OURS}]
    answer = status.release(
        Cluster(),
        "cilium",
        "kube-system",
        "cilium/cilium",
        "1.20.0",
        {**VALUES, "k8sServicePort": 16443},
    )
    assert answer["changes"] == [
        "chart version 1.19.6 -> 1.20.0",
        "value k8sServicePort: 6443 -> 16443",
    ]
    assert "history" not in helm_reads[1]  # nothing dropped: whose revision it is does not matter


def test_values_a_hand_install_set_are_refused_by_key(helm_reads):
    helm_reads[0]["release"] = installed(
        version="1.18.4", values={**VALUES, "ipam": {"mode": "kubernetes"}}
    )
    helm_reads[0]["history"] = [
        {"revision": 1, "status": "deployed", "description": "Install complete"}
    ]
    with pytest.raises(ClusterError) as error:
        read_release()
    assert str(error.value).startswith(
        "release kube-system/cilium has values set by hand that cilium_values does not hold: ipam.mode;"
    )
    assert "kubernetes" not in str(error.value)  # the key, not its value


def test_a_hand_set_key_the_chart_does_not_know_is_dropped_without_a_word(helm_reads):
    """What an older cilium-lab (no description of ours) left: the seed's cgroup.automount,
    which the chart ignored, so dropping it changes nothing."""
    helm_reads[0]["release"] = installed(
        values={**VALUES, "cgroup": {"automount": {"enabled": False}}}
    )
    helm_reads[0]["history"] = [
        {"revision": 1, "status": "deployed", "description": "Install complete"}
    ]
    assert read_release()["changes"] == [
        "value cgroup.automount.enabled: false -> (the chart's default)"
    ]


def test_a_key_removed_from_the_data_after_our_migration_is_an_ordinary_change(helm_reads):
    helm_reads[0]["release"] = installed(values={**VALUES, "ipam": {"mode": "kubernetes"}})
    helm_reads[0]["history"] = [{"revision": 2, "status": "deployed", "description": OURS}]
    answer = read_release()
    assert answer["changes"] == ['value ipam.mode: "kubernetes" -> (the chart\'s default)']
    assert "revision_values" not in helm_reads[1]


def test_a_pending_release_is_refused_with_the_rollback(helm_reads):
    helm_reads[0]["release"] = installed(status="pending-upgrade", revision=3)
    helm_reads[0]["history"] = [
        {"revision": 1, "status": "superseded", "description": OURS},
        {"revision": 2, "status": "deployed", "description": OURS},
        {"revision": 3, "status": "pending-upgrade", "description": "Preparing upgrade"},
    ]
    with pytest.raises(ClusterError, match="run `helm rollback cilium 2 -n kube-system`"):
        read_release(takeover=True)  # no override for it: helm itself refuses to go on


def test_a_failed_release_is_upgraded_and_says_the_way_back(helm_reads):
    helm_reads[0]["release"] = installed(status="failed", revision=2)
    helm_reads[0]["history"] = [
        {"revision": 1, "status": "superseded", "description": OURS},
        {"revision": 2, "status": "failed", "description": "Upgrade failed"},
    ]
    assert read_release()["changes"] == [
        "release is failed (revision 2): the upgrade replaces it (to go back instead: "
        "helm rollback cilium 1 -n kube-system)"
    ]


@pytest.mark.parametrize(("create_namespace", "refused"), [(False, True), (True, False)])
def test_a_missing_namespace_is_refused_unless_helm_creates_it(
    helm_reads, create_namespace, refused
):
    helm_reads[0]["release"] = {"exists": False}
    cluster = Cluster(namespaces=())
    if refused:
        with pytest.raises(
            ClusterError,
            match="cilium_namespace kube-system does not exist on https://kubernetes:6443",
        ):
            read_release(cluster=cluster)
    else:
        assert read_release(cluster=cluster, create_namespace=True)["changes"] == [
            "install cilium in kube-system"
        ]
        assert cluster.gets == []

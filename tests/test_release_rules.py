"""What an upgrade of a release already there may do (release_rules) and the check of the values'
keys against the chart's own (chart_keys, fed Cilium's real values.yaml from ../shared/charts).
No helm, no API server."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from cilium_lab.cluster import ClusterError, chart_keys, release_rules

REPO = Path(__file__).resolve().parents[1]
CHARTS = Path(os.environ.get("CILIUM_LAB_CHARTS") or REPO.parent / "shared" / "charts")


@pytest.mark.parametrize(
    ("installed", "desired", "step"),
    [
        ("1.19.6", "1.19.6", "same"),
        ("1.19.5", "1.19.6", "patch"),
        ("1.19.6", "1.20.0", "minor"),
        ("1.19.6", "1.20.3", "minor"),
        ("1.16.5", "1.19.6", "skip"),
        ("1.18.0", "1.20.0", "skip"),
        ("1.19.6", "2.0.0", "skip"),
        ("1.20.0", "1.19.6", "downgrade"),
        ("1.19.6", "1.19.5", "downgrade"),
        ("1.20.0", "1.20.0-pre.1", "downgrade"),
        ("1.20.0-pre.1", "1.20.0", "patch"),
        ("1.19.6", "1.20.0-rc.0", "minor"),
        ("v1.19.6", "1.19.6", "same"),
        ("nightly", "1.19.6", "unknown"),
    ],
)
def test_version_step(installed, desired, step):
    assert release_rules.version_step(installed, desired) == step


def release(chart="cilium", version="1.19.6"):
    return {"exists": True, "status": "deployed", "chart": chart, "version": version}


@pytest.mark.parametrize(
    ("version", "pinned"), [("1.19.6", "1.19.6"), ("1.19.2", "1.19.6"), ("1.19.6", "1.20.0")]
)
def test_the_same_version_a_patch_or_one_minor_up_may_upgrade(version, pinned):
    assert (
        release_rules.version_problem(
            "kube-system/cilium", release(version=version), "cilium", pinned
        )
        is None
    )


def test_a_downgrade_names_both_versions_and_what_to_do():
    problem = release_rules.version_problem(
        "kube-system/cilium", release(version="1.20.0"), "cilium", "1.19.6"
    )
    assert problem == (
        "release kube-system/cilium runs chart cilium 1.20.0, newer than the pinned 1.19.6: Cilium "
        "does not support downgrades; pin cilium_chart_version 1.20.0 or later, or set "
        "cilium_release_takeover = True in inventories/group_data/local.py to take it over anyway"
    )


def test_a_skip_of_minors_names_the_next_minor():
    problem = release_rules.version_problem(
        "kube-system/cilium", release(version="1.16.5"), "cilium", "1.19.6"
    )
    assert problem.startswith(
        "release kube-system/cilium runs chart cilium 1.16.5, and the pinned 1.19.6 is more than "
        "one minor up: Cilium upgrades one minor at a time; pin a 1.17.x release first"
    )
    assert problem.endswith(
        "cilium_release_takeover = True in inventories/group_data/local.py to take it over anyway"
    )


def test_another_charts_release_is_named():
    problem = release_rules.version_problem(
        "kube-system/cilium", release(chart="nginx", version="1.0.0"), "cilium", "1.19.6"
    )
    assert problem.startswith("release kube-system/cilium is chart nginx 1.0.0, not cilium")


def test_the_override_turns_a_refusal_into_a_line_of_the_plan():
    problem = release_rules.version_problem(
        "kube-system/cilium", release(version="1.20.0"), "cilium", "1.19.6"
    )
    with pytest.raises(ClusterError, match="newer than the pinned 1.19.6"):
        release_rules.refuse(problem, takeover=False)
    assert release_rules.refuse(problem, takeover=True) == (
        "release kube-system/cilium runs chart cilium 1.20.0, newer than the pinned 1.19.6: "
        "Cilium does not support downgrades; taken over, as cilium_release_takeover says"
    )
    assert release_rules.refuse(None, takeover=False) is None


def test_each_changed_key_is_one_line_and_no_mapping_is_printed_whole():
    secret = {"key": "s3cr3t-" * 20}
    old = {
        "k8sServicePort": 6443,
        "ipam": {"mode": "kubernetes"},
        "hubble": {"tls": secret},
        "tolerations": [{"operator": "Exists", "key": "x" * 40}],
    }
    new = {
        "k8sServicePort": 16443,
        "hubble": {"enabled": False, "tls": {"key": "other"}},
        "tolerations": [],
    }
    lines = release_rules.value_changes(old, new)
    assert lines == [
        "value hubble.enabled: (unset) -> false",
        f'value hubble.tls.key: "{("s3cr3t-" * 20)[:56]}... -> "other"',
        'value ipam.mode: "kubernetes" -> (the chart\'s default)',
        "value k8sServicePort: 6443 -> 16443",
        "value tolerations: <list of 1 items> -> []",
    ]
    assert all("{" not in line for line in lines)


def test_dropped_keys_are_the_installed_leaves_the_data_does_not_hold():
    installed = {
        "ipam": {"mode": "kubernetes"},
        "cgroup": {"hostRoot": "/sys/fs/cgroup"},
        "k8sServicePort": 6443,
    }
    desired = {"cgroup": {"hostRoot": "/sys/fs/cgroup"}, "k8sServicePort": 16443}
    assert release_rules.dropped_keys(installed, desired) == ["ipam.mode"]


def history(*descriptions, status="deployed"):
    entries = [
        {"revision": n, "status": "superseded", "chart": "cilium-1.19.6", "description": d}
        for n, d in enumerate(descriptions, 1)
    ]
    entries[-1]["status"] = status
    return entries


OURS = "cilium-lab: the release as the group data declares it"


def test_a_key_removed_from_the_data_after_our_own_revision_is_an_ordinary_change():
    installed = {"ipam": {"mode": "kubernetes"}}
    assert release_rules.hand_set(["ipam.mode"], installed, history("Install complete", OURS)) == []


def test_a_key_a_hand_install_set_is_named():
    installed = {"ipam": {"mode": "kubernetes"}}
    assert release_rules.hand_set(["ipam.mode"], installed, history("Install complete")) == [
        "ipam.mode"
    ]


def test_a_hand_upgrade_after_ours_names_only_what_it_set():
    """helm upgrade --reuse-values --set debug.enabled=true by hand after our migration: the key
    our revision set stays ours."""
    installed = {"ipam": {"mode": "kubernetes"}, "debug": {"enabled": True}}
    ours_values = {"ipam": {"mode": "kubernetes"}}
    found = release_rules.hand_set(
        ["debug.enabled", "ipam.mode"], installed, history(OURS, "Upgrade complete"), ours_values
    )
    assert found == ["debug.enabled"]
    assert release_rules.last_ours(history(OURS, "Upgrade complete")) == 1


def test_a_rollback_to_our_revision_is_ours():
    revisions = history(OURS, "Upgrade complete", "Rollback to 1")
    assert release_rules.ours(revisions[-1], revisions)
    assert not release_rules.ours(revisions[1], revisions)


def test_hand_set_values_are_named_by_key_only():
    line = release_rules.hand_set_problem("kube-system/cilium", ["ipam.mode", "debug.enabled"])
    assert line == (
        "release kube-system/cilium has values set by hand that cilium_values does not hold: "
        "ipam.mode, debug.enabled; the upgrade would drop them (helm get values shows them): add "
        "them to cilium_values to keep them, or set cilium_release_takeover = True in "
        "inventories/group_data/local.py to drop them"
    )


def test_a_pending_upgrade_names_the_rollback_to_the_last_good_revision():
    revisions = history(OURS, OURS, "Preparing upgrade", status="pending-upgrade")
    installed = {"status": "pending-upgrade", "revision": 3}
    assert release_rules.pending_problem("cilium", "kube-system", installed, revisions) == (
        "release kube-system/cilium is pending-upgrade (revision 3): a helm run on it never "
        "finished, and helm refuses another until it is undone; run "
        "`helm rollback cilium 2 -n kube-system`, then the deploy again"
    )


def test_a_pending_install_has_no_revision_to_go_back_to():
    revisions = history("Initial install underway", status="pending-install")
    installed = {"status": "pending-install", "revision": 1}
    assert "run `helm uninstall cilium -n kube-system`" in release_rules.pending_problem(
        "cilium", "kube-system", installed, revisions
    )


def test_a_failed_revision_is_skipped_on_the_way_back():
    revisions = history(OURS, "Upgrade failed", "Upgrade failed", status="failed")
    revisions[1]["status"] = "failed"
    assert release_rules.way_back("cilium", "kube-system", revisions, 3) == (
        "helm rollback cilium 1 -n kube-system"
    )


# The chart's own keys: Cilium's real values.yaml.


@pytest.fixture(scope="module")
def chart_shape(tmp_path_factory):
    tgz = CHARTS / "cilium-1.19.6.tgz"
    if not tgz.is_file():
        pytest.skip(f"Cilium's chart is not in {CHARTS} (set CILIUM_LAB_CHARTS)")
    with tarfile.open(tgz) as archive:
        text = archive.extractfile("cilium/values.yaml").read().decode()
    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(cache)
    try:
        yield chart_keys.chart_shape("cilium", "1.19.6", lambda: text)
    finally:
        os.environ.pop("XDG_CACHE_HOME") if old is None else os.environ.update(XDG_CACHE_HOME=old)


@pytest.mark.parametrize(
    ("values", "unknown"),
    [
        ({"cgroup": {"automount": {"enabled": False}}}, [("cgroup.automount", "cgroup.autoMount")]),
        ({"kubeProxyReplacment": True}, [("kubeProxyReplacment", "kubeProxyReplacement")]),
        ({"ipam": {"mode": "kubernetes", "moed": "x"}}, [("ipam.moed", "ipam.mode")]),
        ({"zzzzqqqq": 1}, [("zzzzqqqq", None)]),
    ],
)
def test_an_unknown_key_is_named_with_the_closest_known_one(chart_shape, values, unknown):
    assert chart_keys.unknown_keys(values, chart_shape) == unknown


@pytest.mark.parametrize(
    "values",
    [
        # The chapter's values, spelt as the chart spells them.
        {
            "kubeProxyReplacement": True,
            "k8sServiceHost": "kubernetes",
            "k8sServicePort": 6443,
            "cgroup": {"autoMount": {"enabled": False}, "hostRoot": "/sys/fs/cgroup"},
        },
        # Empty maps by default: free-form.
        {"podAnnotations": {"example.com/team": "net"}, "extraConfig": {"any-key": "1"}},
        {"operator": {"podAnnotations": {"a": "b"}}, "commonLabels": {"x": "y"}},
        # A map of label keys by default: free-form too.
        {"nodeSelector": {"node-role.kubernetes.io/worker": ""}},
        # Null by default: whatever the key takes (a list, a number).
        {"hubble": {"metrics": {"enabled": ["dns", "drop"]}}, "k8sClientRateLimit": {"qps": 50}},
        # A list by default: the items are the user's.
        {"tolerations": [{"operator": "Exists", "anything": 1}], "extraArgs": ["--x"]},
    ],
)
def test_known_and_free_form_keys_pass(chart_shape, values):
    assert chart_keys.unknown_keys(values, chart_shape) == []


@pytest.mark.parametrize(
    ("key", "known"),
    [
        ("cgroup.autoMount.enabled", True),
        ("cgroup.automount.enabled", False),
        ("ipam.mode", True),
        ("podAnnotations.example.com/team", True),
        ("kubeProxyReplacment", False),
    ],
)
def test_a_dotted_key_is_known_or_not(chart_shape, key, known):
    assert chart_keys.known(key, chart_shape) is known


def test_the_problem_line_names_the_key_the_chart_and_the_fix(chart_shape):
    assert chart_keys.problems(
        {"cgroup": {"automount": {"enabled": False}}}, chart_shape, "cilium 1.19.6"
    ) == [
        "cilium_values key cgroup.automount is not a key of chart cilium 1.19.6 (did you mean "
        "cgroup.autoMount?); helm would ignore it: fix it in cilium_values"
    ]


def test_the_chart_is_read_once_per_name_and_version(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    reads = []

    def read():
        reads.append(1)
        return "cgroup:\n  autoMount:\n    enabled: true\n"

    first = chart_keys.chart_shape("cilium", "1.19.6", read)
    second = chart_keys.chart_shape("cilium", "1.19.6", read)
    assert first == second == {"cgroup": {"autoMount": {"enabled": ""}}}
    assert len(reads) == 1
    assert (
        json.loads((tmp_path / "cilium-lab" / "chart-keys" / "cilium-1.19.6.json").read_text())
        == first
    )
    chart_keys.chart_shape("cilium", "1.20.0", read)
    assert len(reads) == 2
    # An unpinned chart can change its keys: never kept.
    chart_keys.chart_shape("cilium", None, read)
    chart_keys.chart_shape("cilium", None, read)
    assert len(reads) == 4


def test_check_refuses_every_unknown_key_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    values = {"a": 1, "bb": 2}
    with pytest.raises(ClusterError) as error:
        chart_keys.check(values, chart_keys.shape({"aa": 1, "b": 2}), "c 1.0.0")
    assert "\n" not in str(error.value)
    assert "key a is not" in str(error.value) and "key bb is not" in str(error.value)

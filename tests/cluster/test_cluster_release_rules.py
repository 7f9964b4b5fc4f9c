"""
A release that is already there, and the values checked against the chart, before any change:
Cilium's real charts (1.16.5, 1.19.6, 1.20.0 from ../shared/charts) installed by hand with the
real helm into a real API server (local_control_plane.py), then read through the deploy's fact
command (``cilium-lab status --check release``) or the deploy itself on ``@local``. Every refusal
is one line, exit 2, and leaves the release's revisions as they were.
"""

from __future__ import annotations

import json
import os
import runpy
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import release_secrets, set_status
from test_cluster_deploy import pyinfra, write_inventory

# The chapter's values, as the group data holds them.
GROUP_DATA = Path(__file__).resolve().parents[2] / "inventories" / "group_data"
VALUES = runpy.run_path(str(GROUP_DATA / "all.py"))["cilium_values"]


@pytest.fixture
def tgz(charts_dir):
    def chart(version: str) -> str:
        path = charts_dir / f"cilium-{version}.tgz"
        if not path.is_file():
            pytest.skip(f"no chart {path}")
        return str(path)

    return chart


def hand_install(helm, chart: str, values: dict) -> None:
    """``helm upgrade --install`` by hand: helm's own description, not ours."""
    helm(
        "upgrade",
        "--install",
        "cilium",
        chart,
        "-n",
        "kube-system",
        "--values",
        "-",
        input=json.dumps(values),
    )


def check_release(env, kubeconfig, chart: str, version: str, values: dict, *args: str):
    """The deploy's release fact command: the JSON answer, or the refusal."""
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
            "--kubeconfig",
            str(kubeconfig),
            "--chart",
            chart,
            "--chart-version",
            version,
            "--values-json",
            json.dumps(values),
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def assert_refused(result, *expected):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr


def answer(result) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["release"]


def history(helm) -> list[dict]:
    return json.loads(helm("history", "cilium", "-n", "kube-system", "-o", "json").stdout)


def test_a_newer_release_installed_by_hand_is_refused_as_a_downgrade(
    kubeconfig, cluster, helm_env, helm, tgz, no_release_afterwards
):
    hand_install(helm, tgz("1.20.0"), VALUES)
    result = check_release(helm_env, kubeconfig, tgz("1.19.6"), "1.19.6", VALUES)
    assert_refused(
        result,
        "release kube-system/cilium runs chart cilium 1.20.0, newer than the pinned 1.19.6",
        "pin cilium_chart_version 1.20.0 or later",
        "cilium_release_takeover = True",
    )
    assert release_secrets(cluster) == ["sh.helm.release.v1.cilium.v1"]

    taken = answer(
        check_release(helm_env, kubeconfig, tgz("1.19.6"), "1.19.6", VALUES, "--takeover")
    )
    assert taken["changes"] == [
        "release kube-system/cilium runs chart cilium 1.20.0, newer than the pinned 1.19.6: "
        "Cilium does not support downgrades; taken over, as cilium_release_takeover says",
        "chart version 1.20.0 -> 1.19.6",
    ]


def test_an_older_release_with_values_of_its_own_more_than_one_minor_down_is_refused(
    kubeconfig, cluster, helm_env, helm, tgz, no_release_afterwards
):
    """The issue's case: 1.16.5 installed by hand with ipam.mode=kubernetes, pinned 1.19.6."""
    hand_install(helm, tgz("1.16.5"), {**VALUES, "ipam": {"mode": "kubernetes"}})
    result = check_release(helm_env, kubeconfig, tgz("1.19.6"), "1.19.6", VALUES)
    assert_refused(
        result,
        "runs chart cilium 1.16.5, and the pinned 1.19.6 is more than one minor up",
        "pin a 1.17.x release first",
    )
    assert release_secrets(cluster) == ["sh.helm.release.v1.cilium.v1"]

    # Taken over, both are said: the skip and the hand-set key it drops.
    taken = answer(
        check_release(helm_env, kubeconfig, tgz("1.19.6"), "1.19.6", VALUES, "--takeover")
    )
    assert taken["changes"][:2] == [
        "release kube-system/cilium runs chart cilium 1.16.5, and the pinned 1.19.6 is more "
        "than one minor up: Cilium upgrades one minor at a time; taken over, as "
        "cilium_release_takeover says",
        "release kube-system/cilium has values set by hand that cilium_values does not hold: "
        "ipam.mode; taken over, as cilium_release_takeover says",
    ]


def test_one_minor_up_over_a_hand_install_names_each_hand_set_key(
    kubeconfig, cluster, helm_env, helm, tgz, no_release_afterwards
):
    hand_install(helm, tgz("1.19.6"), {**VALUES, "ipam": {"mode": "kubernetes"}})
    result = check_release(helm_env, kubeconfig, tgz("1.20.0"), "1.20.0", VALUES)
    assert_refused(
        result,
        "has values set by hand that cilium_values does not hold: ipam.mode;",
        "add them to cilium_values to keep them",
    )
    assert "kubernetes\n" not in result.stderr and "'kubernetes'" not in result.stderr

    # Kept in the data, the hand-set value is the declared state: one minor up, nothing else.
    kept = {**VALUES, "ipam": {"mode": "kubernetes"}}
    assert answer(check_release(helm_env, kubeconfig, tgz("1.20.0"), "1.20.0", kept))[
        "changes"
    ] == ["chart version 1.19.6 -> 1.20.0"]


def test_one_minor_up_after_our_migration_is_one_upgrade_named_key_by_key(
    tmp_path, kubeconfig, cluster, chart_repo, helm_env, helm, no_release_afterwards
):
    """Our revision carries our description; a key then removed from the group data is an
    ordinary change, and --dry names each changed key, old -> new."""
    inventory = write_inventory(tmp_path, kubeconfig, chart_repo)
    first = pyinfra(helm_env, inventory, "-y")
    assert first.returncode == 0, first.stdout + first.stderr
    assert history(helm)[-1]["description"].startswith("cilium-lab")

    changed = {
        **{k: v for k, v in VALUES.items() if k != "cgroup"},
        "cgroup": {"autoMount": {"enabled": False}},
        "k8sServicePort": 16443,
    }
    bumped = write_inventory(
        tmp_path / "bumped",
        kubeconfig,
        chart_repo,
        cilium_chart_version="1.20.0",
        cilium_values=changed,
    )
    dry = pyinfra(helm_env, bumped, "--dry")
    output = dry.stdout + dry.stderr
    assert dry.returncode == 0, output
    plan = [line.strip() for line in output.splitlines() if "release kube-system/cilium:" in line]
    assert [line.split("release kube-system/cilium: ")[1] for line in plan] == [
        "chart version 1.19.6 -> 1.20.0",
        'value cgroup.hostRoot: "/sys/fs/cgroup" -> (the chart\'s default)',
        "value k8sServicePort: 6443 -> 16443",
    ], output
    assert release_secrets(cluster) == ["sh.helm.release.v1.cilium.v1"]

    run = pyinfra(helm_env, bumped, "-y")
    assert run.returncode == 0, run.stdout + run.stderr
    revisions = history(helm)
    assert [(r["revision"], r["chart"]) for r in revisions] == [
        (1, "cilium-1.19.6"),
        (2, "cilium-1.20.0"),
    ]
    assert revisions[-1]["description"].startswith("cilium-lab")


def test_the_seeds_misspelt_key_left_by_an_earlier_migration_is_replaced_quietly(
    kubeconfig, cluster, helm_env, helm, tgz, no_release_afterwards
):
    """A release an older cilium-lab (no description of ours) or the seed's commands installed:
    its cgroup.automount did nothing, so dropping it needs no override."""
    seed = {**VALUES, "cgroup": {"automount": {"enabled": False}, "hostRoot": "/sys/fs/cgroup"}}
    hand_install(helm, tgz("1.19.6"), seed)
    found = answer(check_release(helm_env, kubeconfig, tgz("1.19.6"), "1.19.6", VALUES))
    assert found["changes"] == [
        "value cgroup.autoMount.enabled: (unset) -> false",
        "value cgroup.automount.enabled: false -> (the chart's default)",
    ]


def test_a_pending_upgrade_is_refused_with_the_rollback_that_clears_it(
    kubeconfig, cluster, helm_env, helm, tgz, no_release_afterwards
):
    hand_install(helm, tgz("1.19.6"), VALUES)
    hand_install(helm, tgz("1.19.6"), {**VALUES, "debug": {"enabled": True}})
    set_status(cluster, 2, "pending-upgrade")

    result = check_release(helm_env, kubeconfig, tgz("1.19.6"), "1.19.6", VALUES, "--takeover")
    assert_refused(
        result,
        "release kube-system/cilium is pending-upgrade (revision 2)",
        "run `helm rollback cilium 1 -n kube-system`",
    )
    assert release_secrets(cluster) == [
        "sh.helm.release.v1.cilium.v1",
        "sh.helm.release.v1.cilium.v2",
    ]

    # The advice works: after it, the release is the one declared.
    helm("rollback", "cilium", "1", "-n", "kube-system")
    assert answer(check_release(helm_env, kubeconfig, tgz("1.19.6"), "1.19.6", VALUES))["matches"]


def test_a_pending_install_is_refused_with_the_uninstall(
    kubeconfig, cluster, helm_env, helm, tgz, no_release_afterwards
):
    hand_install(helm, tgz("1.19.6"), VALUES)
    set_status(cluster, 1, "pending-install")
    assert_refused(
        check_release(helm_env, kubeconfig, tgz("1.19.6"), "1.19.6", VALUES),
        "is pending-install (revision 1)",
        "run `helm uninstall cilium -n kube-system`",
    )


def test_a_failed_release_is_upgraded_and_the_way_back_named(
    kubeconfig, cluster, helm_env, helm, tgz, no_release_afterwards
):
    hand_install(helm, tgz("1.19.6"), VALUES)
    hand_install(helm, tgz("1.19.6"), {**VALUES, "k8sServicePort": 16443})
    set_status(cluster, 2, "failed")
    found = answer(check_release(helm_env, kubeconfig, tgz("1.19.6"), "1.19.6", VALUES))
    assert found["changes"] == [
        "release is failed (revision 2): the upgrade replaces it (to go back instead: "
        "helm rollback cilium 1 -n kube-system)",
        "value k8sServicePort: 16443 -> 6443",
    ]


def test_another_charts_release_under_the_name_is_refused(
    tmp_path, kubeconfig, cluster, helm_env, helm, tgz, no_release_afterwards
):
    chart = tmp_path / "other"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: other\nversion: 1.0.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: other-chart}\ndata: {a: b}\n"
    )
    hand_install(helm, str(chart), {})
    assert_refused(
        check_release(helm_env, kubeconfig, tgz("1.19.6"), "1.19.6", VALUES),
        "release kube-system/cilium is chart other 1.0.0, not cilium",
        "uninstall it or give cilium_release another name",
    )


def test_an_unknown_key_is_refused_with_the_closest_known_one(kubeconfig, cluster, helm_env, tgz):
    """The seed's own spelling: Cilium's schema lets it through and the chart ignores it."""
    seed = {**VALUES, "cgroup": {"automount": {"enabled": False}, "hostRoot": "/sys/fs/cgroup"}}
    assert_refused(
        check_release(helm_env, kubeconfig, tgz("1.19.6"), "1.19.6", seed),
        "cilium_values key cgroup.automount is not a key of chart cilium 1.19.6 "
        "(did you mean cgroup.autoMount?)",
    )
    typo = {**VALUES, "kubeProxyReplacment": True}
    assert_refused(
        check_release(helm_env, kubeconfig, tgz("1.19.6"), "1.19.6", typo),
        "key kubeProxyReplacment is not a key",
        "did you mean kubeProxyReplacement?",
    )
    assert release_secrets(cluster) == []


def test_free_form_keys_are_accepted(kubeconfig, cluster, helm_env, tgz):
    values = {
        **VALUES,
        "podAnnotations": {"example.com/team": "net"},
        "extraConfig": {"enable-anything": "true"},
        "nodeSelector": {"kubernetes.io/os": "linux", "lab/role": "node"},
        "hubble": {"metrics": {"enabled": ["dns"]}},
    }
    found = answer(check_release(helm_env, kubeconfig, tgz("1.19.6"), "1.19.6", values))
    assert found["changes"] == ["install cilium in kube-system"]


def test_a_missing_namespace_is_refused_unless_helm_creates_it(kubeconfig, cluster, helm_env, tgz):
    args = ("--namespace", "no-such-namespace")
    assert_refused(
        check_release(helm_env, kubeconfig, tgz("1.19.6"), "1.19.6", VALUES, *args),
        "cilium_namespace no-such-namespace does not exist on https://127.0.0.1:",
        "add --create-namespace to helm_extra_args",
    )
    created = check_release(
        helm_env, kubeconfig, tgz("1.19.6"), "1.19.6", VALUES, *args, "--create-namespace"
    )
    assert answer(created)["changes"] == ["install cilium in no-such-namespace"]


def test_kube_proxy_replacement_false_is_refused_before_any_change(
    tmp_path, kubeconfig, cluster, chart_repo, helm_env
):
    values = {**VALUES, "kubeProxyReplacement": False}
    inventory = write_inventory(tmp_path, kubeconfig, chart_repo, cilium_values=values)
    run = pyinfra(helm_env, inventory, "-y")
    output = run.stdout + run.stderr
    assert run.returncode != 0, output
    lines = [line.strip() for line in output.splitlines() if "preflight:" in line]
    assert lines == [
        "[@local] preflight: cilium_values kubeProxyReplacement is False, but the migration "
        "removes kube-proxy from every node: set it to True"
    ], output
    assert release_secrets(cluster) == []


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x7fELF\x02\x01\x01\x00\xd0\xff\xfe", "is not a text file (not UTF-8)"),
        (b"clusters: [\n", "cannot be read as YAML"),
        (b"apiVersion: v1\nclusters:\n- name: lab\n", "is invalid: Invalid kube-config file"),
        (None, "is a directory, not a file"),
    ],
    ids=["binary", "bad_yaml", "missing_keys", "directory"],
)
def test_an_unreadable_kubeconfig_is_one_line(tmp_path, helm_env, tgz, content, expected):
    path = tmp_path / "kubeconfig"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    assert_refused(
        check_release(helm_env, path, tgz("1.19.6"), "1.19.6", VALUES),
        f"cilium-lab: kubeconfig {path} {expected}",
    )


def test_a_second_check_of_the_same_chart_runs_no_helm_show_values(
    tmp_path, kubeconfig, cluster, helm_env, helm_bin, tgz
):
    """The chart's keys are kept per chart and version: a re-check asks helm only what changed."""
    shim_dir = tmp_path / "shim"
    shim_dir.mkdir()
    log = tmp_path / "helm.log"
    shim = shim_dir / "helm"
    shim.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {helm_bin} "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    env = dict(
        helm_env,
        PATH=f"{shim_dir}{os.pathsep}{helm_env['PATH']}",
        XDG_CACHE_HOME=str(tmp_path / "cache"),
    )
    for _ in range(2):
        answer(check_release(env, kubeconfig, tgz("1.19.6"), "1.19.6", VALUES))
    calls = log.read_text().splitlines()
    assert sum(call.startswith("show values") for call in calls) == 1, calls
    assert sum(call.startswith("template") for call in calls) == 2, calls
    assert (tmp_path / "cache" / "cilium-lab" / "chart-keys" / "cilium-1.19.6.json").is_file()

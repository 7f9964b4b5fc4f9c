"""Preflight verdicts: a node's checks in, the problems (with what to do) out."""

import pytest
from pyinfra.api.exceptions import DeployError

from deploys.support.preflight import kernel_version, node_problems, skipped_checks

READY = {
    "root": True,
    "systemd": True,
    "kernel": "5.15.0-83-generic",
    "cgroup_fs": "cgroup2fs",
    "resolves": True,
    "reachable": True,
}
SETTINGS = dict(
    min_kernel="5.4", service_host="kubernetes", service_port=6443, cgroup_root="/sys/fs/cgroup", user="ubuntu"
)


def test_ready_node_has_no_problem():
    assert node_problems(READY, **SETTINGS) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"root": False}, "commands did not run as root: give ubuntu sudo"),
        ({"systemd": False}, "systemd is not running as PID 1"),
        ({"kernel": "4.15.0-20-generic"}, "kernel 4.15.0-20-generic is older than 5.4"),
        ({"cgroup_fs": "tmpfs"}, "no cgroup v2 mounted at /sys/fs/cgroup (found tmpfs)"),
        ({"resolves": False, "reachable": False}, "'kubernetes' does not resolve on the node"),
        ({"reachable": False}, "kubernetes:6443 does not answer from the node"),
    ],
)
def test_each_failed_check_is_one_problem(change, expected):
    problems = node_problems({**READY, **change}, **SETTINGS)
    assert len(problems) == 1
    assert problems[0].startswith(expected)


def test_a_node_that_could_not_be_asked():
    problems = node_problems({**READY, "kernel": "", "root": False}, **SETTINGS)
    assert problems == [
        "the preflight command could not run: check SSH and that ubuntu can use sudo without a password"
    ]


def test_skipped_checks_are_not_reported():
    state = {**READY, "cgroup_fs": "tmpfs", "kernel": "4.19.0"}
    assert node_problems(state, skip={"cgroup", "kernel"}, **SETTINGS) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, set()), ([], set()), ("kernel,cgroup", {"kernel", "cgroup"}), (["api_port"], {"api_port"})],
)
def test_skip_data(value, expected):
    assert skipped_checks({"preflight_skip": value}) == expected


def test_unknown_skip_is_refused():
    with pytest.raises(DeployError, match="unknown checks \\['kernal'\\]"):
        skipped_checks({"preflight_skip": "kernal"})


@pytest.mark.parametrize(
    ("release", "version"),
    [("5.15.0-83-generic", (5, 15, 0)), ("6.18.44-fc-v669", (6, 18, 44)), ("5.4", (5, 4)), ("weird", ())],
)
def test_kernel_version(release, version):
    assert kernel_version(release) == version
    assert (kernel_version(release) >= kernel_version("5.4")) == (version >= (5, 4))

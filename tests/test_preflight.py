"""Preflight verdicts: a node's checks in, the problems (with what to do) out."""

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pyinfra.api.exceptions import DeployError

from deploys.support.data import skipped_checks, values_problems
from deploys.support.node_verdict import kernel_version, node_problems
from facts.directories import directory_problems

READY = {
    "root": False,
    "sudo": True,
    "systemd": True,
    "kernel": "5.15.0-83-generic",
    "cgroup_fs": "cgroup2fs",
    "addresses": ["192.168.1.10"],
    "resolves": True,
    "reachable": True,
    "conf_dir": True,
    "conf_kib": 8,
    "room": [{"free_kib": 100_000, "read_only": False}],
}
DIRS = {
    "cni_conf_dir": "/etc/cni/net.d",
    "cni_backup_dir": "/var/backups/cilium-lab/cni",
    "modules_backup_dir": "/var/backups/cilium-lab/modules-load.d",
}
SETTINGS = dict(
    min_kernel="5.4",
    service_host="kubernetes",
    service_port=6443,
    cgroup_root="/sys/fs/cgroup",
    user="ubuntu",
    conf_dir="/etc/cni/net.d",
    backup_dirs=["/var/backups/cilium-lab/cni"],
)


KPR = {"kubeProxyReplacement": True}


def test_ready_node_has_no_problem():
    assert node_problems(READY, **SETTINGS) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"sudo": False}, "sudo asks ubuntu for a password: allow ubuntu sudo without one"),
        ({"systemd": False}, "systemd is not running as PID 1"),
        ({"kernel": "4.15.0-20-generic"}, "kernel 4.15.0-20-generic is older than 5.4"),
        ({"cgroup_fs": "tmpfs"}, "no cgroup v2 mounted at /sys/fs/cgroup (found tmpfs)"),
        (
            {"resolves": False, "reachable": False, "addresses": []},
            "'kubernetes' does not resolve on the node",
        ),
        (
            {"addresses": ["127.0.1.1"]},
            "'kubernetes' resolves to 127.0.1.1 on the node, a loopback address",
        ),
        ({"conf_dir": False}, "cni_conf_dir /etc/cni/net.d does not exist on the node"),
        (
            {"room": [{"free_kib": 10, "read_only": False}]},
            "/var/backups/cilium-lab/cni: 10 KiB free, and the backups need 72 KiB",
        ),
        (
            {"room": [{"free_kib": 100_000, "read_only": True}]},
            "/var/backups/cilium-lab/cni is on a read-only file system",
        ),
        ({"reachable": False}, "kubernetes:6443 does not answer from the node"),
    ],
)
def test_each_failed_check_is_one_problem(change, expected):
    problems = node_problems({**READY, **change}, **SETTINGS)
    assert len(problems) == 1
    assert problems[0].startswith(expected)


def test_a_node_that_could_not_be_asked():
    problems = node_problems({**READY, "kernel": "", "sudo": False}, **SETTINGS)
    assert problems == [
        "the preflight command could not run (pyinfra says why above): check SSH to the node"
    ]


@pytest.mark.parametrize("who", [{"root": True}, {"password_given": True}])
def test_sudo_without_a_password_is_not_needed_by_root_or_with_a_password(who):
    state = {**READY, "sudo": False, "root": who.get("root", False)}
    assert node_problems(state, password_given=who.get("password_given", False), **SETTINGS) == []


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({**KPR, "k8sServiceHost": "kubernetes", "k8sServicePort": 6443}, []),
        ({**KPR, "k8sServiceHost": "kubernetes", "k8sServicePort": "6443"}, []),
        (
            "kubeProxyReplacement=true",
            ["cilium_values is a str, not a mapping of the chart's values"],
        ),
        ({**KPR, "k8sServicePort": 6443}, ["cilium_values has no k8sServiceHost"]),
        (
            {**KPR, "k8sServiceHost": "kubernetes"},
            ["cilium_values k8sServicePort None is not a port number"],
        ),
        (
            {**KPR, "k8sServiceHost": "kubernetes", "k8sServicePort": 70000},
            ["cilium_values k8sServicePort 70000"],
        ),
        (
            {**KPR, "k8sServiceHost": "127.0.0.1", "k8sServicePort": 6443},
            ["cilium_values k8sServiceHost '127.0.0.1' is a loopback"],
        ),
        (
            {**KPR, "k8sServiceHost": "localhost", "k8sServicePort": 6443},
            ["cilium_values k8sServiceHost 'localhost' is a loopback"],
        ),
        (
            {"kubeProxyReplacement": False, "k8sServiceHost": "kubernetes", "k8sServicePort": 6443},
            ["cilium_values kubeProxyReplacement is False, but the migration removes kube-proxy"],
        ),
        (
            {"k8sServiceHost": "kubernetes", "k8sServicePort": 6443},
            ["cilium_values kubeProxyReplacement is None, but the migration removes kube-proxy"],
        ),
        # The chart compares the value as a string: "true" is as good as True, "True" is not.
        ({"kubeProxyReplacement": "true", "k8sServiceHost": "k", "k8sServicePort": 6443}, []),
        (
            {"kubeProxyReplacement": "True", "k8sServiceHost": "k", "k8sServicePort": 6443},
            ["cilium_values kubeProxyReplacement is 'True'"],
        ),
    ],
)
def test_values(values, expected):
    problems = values_problems(values)
    assert len(problems) == len(expected)
    assert all(p.startswith(e) for p, e in zip(problems, expected, strict=True)), problems


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, []),
        (
            {"cni_conf_dir": "etc/cni/net.d"},
            ["cni_conf_dir 'etc/cni/net.d' is not an absolute path"],
        ),
        (
            {"cni_backup_dir": "/etc/cni/net.d/"},
            ["cni_backup_dir and cni_conf_dir are both /etc/cni/net.d"],
        ),
        (
            {"cni_backup_dir": "/etc/cni/net.d/old"},
            ["cni_backup_dir /etc/cni/net.d/old is inside cni_conf_dir"],
        ),
        (
            {"modules_backup_dir": "/var/backups/cilium-lab/cni"},
            ["modules_backup_dir and cni_backup_dir are both"],
        ),
        ({"cni_backup_dir": "/etc/cni/net.d.old"}, []),
    ],
)
def test_directories(change, expected):
    problems = directory_problems({**DIRS, **change})
    assert len(problems) == len(expected)
    assert all(p.startswith(e) for p, e in zip(problems, expected, strict=True)), problems


def test_backup_directories_on_one_file_system_are_one_line():
    room = [{"free_kib": 10, "read_only": False}] * 2
    problems = node_problems(
        {**READY, "room": room}, **{**SETTINGS, "backup_dirs": ["/b/cni", "/b/modules"]}
    )
    assert problems == [
        "/b/cni, /b/modules: 10 KiB free, and the backups need 72 KiB: make room, or choose "
        "another place"
    ]
    room = [{"free_kib": 10, "read_only": True}] * 2
    problems = node_problems(
        {**READY, "room": room}, **{**SETTINGS, "backup_dirs": ["/b/cni", "/b/modules"]}
    )
    assert problems == [
        "/b/cni, /b/modules are on a read-only file system: choose a writable place"
    ]


def test_skipped_checks_are_not_reported():
    state = {**READY, "cgroup_fs": "tmpfs", "kernel": "4.19.0"}
    assert node_problems(state, skip={"cgroup", "kernel"}, **SETTINGS) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, set()),
        ([], set()),
        ("kernel,cgroup", {"kernel", "cgroup"}),
        (["api_port"], {"api_port"}),
    ],
)
def test_skip_data(value, expected):
    assert skipped_checks({"preflight_skip": value}) == expected


def test_unknown_skip_is_refused():
    with pytest.raises(DeployError, match="unknown checks \\['kernal'\\]"):
        skipped_checks({"preflight_skip": "kernal"})


@pytest.mark.parametrize(
    ("release", "version"),
    [
        ("5.15.0-83-generic", (5, 15, 0)),
        ("6.18.44-fc-v669", (6, 18, 44)),
        ("5.4", (5, 4)),
        ("weird", ()),
    ],
)
def test_kernel_version(release, version):
    assert kernel_version(release) == version
    assert (kernel_version(release) >= kernel_version("5.4")) == (version >= (5, 4))


@pytest.mark.skipif(not shutil.which("unshare"), reason="needs unshare (util-linux)")
def test_workstation_sudo_is_checked_for_the_routes_as_the_user_running_pyinfra():
    """Run as a user who is not root (a user namespace of its own makes this process nobody) on
    a machine where sudo cannot run without asking, or is not there: refused in one line."""
    script = textwrap.dedent("""
        from types import SimpleNamespace
        from deploys.support.workstation import sudo_problems
        node = SimpleNamespace(name="worker0", groups=[], data={"pod_cidr": "10.4.0.0/16", "ssh_hostname": "192.168.1.14"})
        node.data = SimpleNamespace(get=node.data.get)
        local = SimpleNamespace(name="@local", groups=["local"])
        local.data = SimpleNamespace(get=lambda key, default=None: {"host_routes_sudo": True}.get(key, default))
        local.state = SimpleNamespace(inventory=[node, local])
        print("\\n".join(sudo_problems(local)) or "ok")
    """)
    result = subprocess.run(
        ["unshare", "--user", "--", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parents[1],
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("host_routes_sudo is set and sudo "), result.stdout
    assert "--data host_routes_sudo=False" in result.stdout

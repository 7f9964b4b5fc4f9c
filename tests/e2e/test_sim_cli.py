"""
``cilium-lab sim``: what a user sees, and that bad input changes nothing on the machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from e2e_sim import CHARTS, CILIUM_LAB, REPO, why_not_runnable

pytestmark = pytest.mark.e2e


@pytest.fixture
def fresh(tmp_path):
    """Run the CLI against a sim home that is not up, and check nothing appeared on the machine."""
    reason = why_not_runnable()
    if reason:
        pytest.skip(reason)
    home = tmp_path / "home"
    env = {**os.environ, "CILIUM_LAB_SIM_HOME": str(home), "CILIUM_LAB_SIM_BRIDGE": "cilbad0"}
    links_before = set(os.listdir("/sys/class/net"))

    def run(*args, env_extra=None, user=None, prefix=()):
        command = [*prefix, str(CILIUM_LAB), "sim", *args]
        if user:
            command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
        return subprocess.run(
            command,
            env={**env, **(env_extra or {})},
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )

    yield run
    assert not (home / "state.json").exists()
    assert set(os.listdir("/sys/class/net")) == links_before


def one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--subnet", "10.251.0.0/33"], "bad subnet"),
        (["--subnet", "10.3.0.0/24"], "overlaps node 2's pod CIDR 10.3.0.0/16"),
        (["--subnet", "10.251.0.0/28"], "too small"),
        (["--bridge", "Bad-Name"], "bad bridge name"),
        (["--inventory", "/nonexistent/dir/sim.py"], "no directory /nonexistent/dir"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(fresh, args, needle):
    one_line_error(fresh("up", *args), needle)


def test_not_root(fresh):
    one_line_error(fresh("up", user="65534"), "needs root")


def test_missing_tools_say_what_to_install(fresh, tmp_path):
    # A PATH with the basics but no systemd-nspawn.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ip", "nsenter", "ssh-keygen", "mount", "umount", "debootstrap"):
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    one_line_error(
        fresh("up", env_extra={"PATH": str(bin_dir)}), "systemd-nspawn", "apt-get install"
    )


def test_without_go_or_binaries_says_what_it_needs(fresh, tmp_path):
    """No Go on PATH and a cache without the control plane's programs: one line naming what would
    do (Go, --bin-dir, or the node-only lab), before anything is built or booted."""
    if not (CHARTS / "index.yaml").is_file():
        pytest.skip(f"Cilium's charts are not in {CHARTS}")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("systemd-nspawn", "ip", "nsenter", "ssh-keygen", "mount", "umount", "debootstrap"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    cache = tmp_path / "cache"
    proc = fresh(
        "up",
        "--charts",
        str(CHARTS),
        env_extra={"PATH": str(bin_dir), "CILIUM_LAB_SIM_CACHE": str(cache)},
    )
    one_line_error(proc, "install Go", "--bin-dir", "--no-control-plane")
    assert not cache.exists() or not any(cache.iterdir())


def test_no_chart_repository_is_one_line_before_any_change(fresh):
    """No --charts, and the official repository cannot be reached: run in a network namespace
    of its own with no network at all, so the attempt never leaves this machine."""
    proc = fresh("up", prefix=("unshare", "--net"))
    one_line_error(proc, "no chart repository", "--charts DIR")


def test_commands_on_a_sim_that_is_not_up(fresh):
    down = fresh("down")
    assert down.returncode == 0 and "not up" in down.stdout
    one_line_error(fresh("status"), "not up")
    one_line_error(fresh("stop", "worker0"), "not up")


def test_subnet_in_use_is_refused(sim, fresh):
    one_line_error(fresh("up", "--subnet", sim.cfg.subnet), "overlaps")


def test_up_again_is_idempotent(sim):
    leaders = {node: _leader(sim, node) for node in sim.nodes}
    again = sim.cli("up")
    assert "already up" in again.stdout
    assert {node: _leader(sim, node) for node in sim.nodes} == leaders
    one_line_error(sim.cli("up", "--nodes", "7", check=False), "up with 6 nodes")


def test_status_shows_every_node(sim):
    out = sim.cli("status").stdout
    for node in sim.nodes:
        line = next(line for line in out.splitlines() if line.startswith(node + " "))
        assert line.split()[1:3] == ["running", str(sim.cfg.address(node))], line
        assert line.split()[-1] == "ok", line


def test_unknown_node_is_refused(sim):
    one_line_error(sim.cli("stop", "worker9", check=False), "no node named 'worker9'")


def test_nodes_are_isolated_and_as_the_guide_leaves_them(sim):
    """Own network namespace and hostname, cgroup v2, the guide's units, kube-proxy's chains, sudo."""
    host_netns = os.readlink("/proc/self/ns/net")
    namespaces = set()
    for node in sim.nodes:
        namespaces.add(sim.sh(node, "readlink /proc/self/ns/net").strip())
        assert sim.sh(node, "hostname").strip() == node
        assert sim.sh(node, "stat -fc %T /sys/fs/cgroup").strip() == "cgroup2fs"
        assert sim.sh(node, "getent hosts $(hostname)").split()[0] == "127.0.1.1"
        assert (
            sim.sh(node, "ip -4 -o addr show host0").split()[3]
            == f"{sim.cfg.address(node)}/{sim.cfg.network.prefixlen}"
        )
        assert sim.sh(node, "ip route show default") == ""  # nothing leaves the machine
        assert sim.sh(node, "su ubuntu -c 'sudo -n id -u'").strip() == "0"
    assert len(namespaces) == len(sim.nodes) and host_netns not in namespaces


def _leader(sim, node):
    from cilium_lab.sim.nodes import leader_pid

    return leader_pid(sim.cfg, node)


def test_a_node_without_its_pid_file_is_still_found(sim):
    """As a `sim up` interrupted between starting nspawn and writing its pid file leaves it:
    status still shows the node running, and stop (and the session's `down`) still stop it."""
    node = sim.nodes[-1]
    (sim.home / "nodes" / node / "nspawn.pid").unlink()
    line = next(
        line for line in sim.cli("status").stdout.splitlines() if line.startswith(node + " ")
    )
    assert line.split()[1] == "running", line
    sim.cli("stop", node)
    # status exits non-zero while a node is stopped.
    line = next(
        line
        for line in sim.cli("status", check=False).stdout.splitlines()
        if line.startswith(node + " ")
    )
    assert line.split()[1] == "stopped", line
    sim.cli("start", node)

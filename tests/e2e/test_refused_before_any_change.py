"""
Bad data and odd nodes, refused by the preflight on the simulated lab: one line each naming the
host and the value, no traceback, a non-zero exit, and not one node changed. Then a host that
cannot be connected at the start, a sudo that wants a password, and two runs started at once.

Each case first gives the run something to change (kube-proxy enabled again on one node), so
that "no node changed" means the preflight held the run back.
"""

from __future__ import annotations

import contextlib
import json
import runpy
import subprocess

import pytest
from e2e_sim import (
    BIN,
    CHARTS,
    DEPLOY,
    GROUP_DATA,
    PYINFRA,
    REPO,
    ROLLBACK,
    Run,
    _json_or_none,
    comparable,
    differences,
)

NODE = "worker1"
# The chapter's values, as the group data holds them.
VALUES = runpy.run_path(str(GROUP_DATA / "all.py"))["cilium_values"]


@pytest.fixture
def pending(sim):
    """Something for the run to change, and every node's state before it."""
    sim.sh(NODE, "systemctl enable --now kube-proxy.service 2>/dev/null")
    return sim.snapshot_all()


def run_on(sim, inventory, *args: str) -> Run:
    """pyinfra with another inventory file than the sim's (the group data only where given)."""
    command = [str(PYINFRA), "--json", "-y", *args, str(inventory), str(DEPLOY)]
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=REPO, env=sim.env
    )
    return Run(proc.returncode, _json_or_none(proc.stdout), proc.stderr)


def preflight_lines(run: Run) -> list[str]:
    return [line.strip() for line in run.log.splitlines() if "preflight:" in line]


def assert_refused(sim, run: Run, before: dict, expected: str, hosts: set[str]) -> None:
    assert run.returncode != 0, run.log
    assert "Traceback" not in run.log, run.log
    lines = preflight_lines(run)
    named = {line.split("]")[0].lstrip("[") for line in lines}
    assert named == hosts, run.log
    # One line per host, each naming what to fix.
    assert len(lines) == len(hosts) and all(expected in line for line in lines), run.log
    assert "nothing was changed on any host" in run.log
    assert sim.snapshot_all() == before


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"pod_cidr": "10.0.0.0/33"}, "pod_cidr '10.0.0.0/33' is not an IPv4 network"),
        ({"cilium_values": "kubeProxyReplacement=true"}, "cilium_values is a str, not a mapping"),
        (
            {"cilium_values": {k: v for k, v in VALUES.items() if k != "k8sServicePort"}},
            "cilium_values k8sServicePort None is not a port number",
        ),
        ({"cilium_values": {**VALUES, "k8sServiceHost": "127.0.0.1"}}, "is a loopback address"),
        ({"cni_conf_dir": "etc/cni/net.d"}, "cni_conf_dir 'etc/cni/net.d' is not an absolute path"),
        (
            {"cni_backup_dir": "/etc/cni/net.d"},
            "cni_backup_dir and cni_conf_dir are both /etc/cni/net.d",
        ),
        ({"cni_backup_dir": "/etc/cni/net.d/kept"}, "is inside cni_conf_dir /etc/cni/net.d"),
        (
            {"cni_conf_dir": "/etc/cni/nowhere"},
            "cni_conf_dir /etc/cni/nowhere does not exist on the node",
        ),
        ({"preflight_skip": "kernal"}, "preflight_skip names unknown checks ['kernal']"),
    ],
    ids=[
        "pod_cidr",
        "values_not_a_mapping",
        "no_port",
        "loopback_value",
        "relative_dir",
        "same_dirs",
        "backup_inside_cni_dir",
        "missing_cni_dir",
        "unknown_skip",
    ],
)
def test_bad_data_is_one_line_per_node_and_no_change(sim, pending, data, expected):
    args = [
        a
        for key, value in data.items()
        for a in ("--data", f"{key}={value if isinstance(value, str) else json.dumps(value)}")
    ]

    run = sim.pyinfra("-y", *args)

    # The values go to the workstation too, which checks them for the chart.
    local = {"@local"} if "cilium_values" in data else set()
    assert_refused(sim, run, pending, expected, set(sim.nodes) | local)


def test_inventory_outside_inventories_names_the_missing_data(sim, pending, tmp_path):
    """pyinfra looks for group data beside the inventory: none there, the run names the key and
    how to point at the project's."""
    inventory = tmp_path / "lab.py"
    inventory.write_text(sim.inventory.read_text())
    run = run_on(sim, inventory, "--data", "ssh_user=ubuntu", "--data", "_sudo=true")

    assert_refused(
        sim, run, pending, "--group-data inventories/group_data", set(sim.nodes) | {"@local"}
    )
    assert "no data 'cilium_values'" in run.log


def test_auto_service_host_without_cluster_info_is_refused(sim, pending):
    """Hand-built clusters have no kube-public/cluster-info for Cilium's "auto" to read."""
    values = {**VALUES, "k8sServiceHost": "auto"}
    run = sim.pyinfra("-y", "--data", f"cilium_values={json.dumps(values)}")

    assert_refused(sim, run, pending, "the cluster checks failed", {"@local"})
    assert "k8sServiceHost is 'auto', but the cluster has no kube-public/cluster-info" in run.log


def helm(sim, *args: str, input: str | None = None) -> str:
    """The real helm on the sim's cluster, as a user runs it by hand."""
    proc = subprocess.run(
        [str(BIN / "helm"), *args, "--kubeconfig", str(sim.cfg.kubeconfig)],
        input=input,
        capture_output=True,
        text=True,
        timeout=300,
        env=sim.env,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture
def newer_release_by_hand(sim):
    """Cilium 1.20.0 installed by hand over whatever the session left (the group data pins
    1.19.6); afterwards the release is put back as it was: rolled back to the revision before,
    or uninstalled."""
    before = sim.helm_revisions()
    helm(
        sim,
        "upgrade",
        "--install",
        "cilium",
        str(CHARTS / "cilium-1.20.0.tgz"),
        "-n",
        "kube-system",
        "--values",
        "-",
        input=json.dumps(VALUES),
    )
    yield
    if before:
        last = max(int(name.rsplit(".v", 1)[1]) for name in before)
        helm(sim, "rollback", "cilium", str(last), "-n", "kube-system", "--wait")
    else:
        helm(sim, "uninstall", "cilium", "-n", "kube-system", "--wait")


def test_a_newer_release_installed_by_hand_is_refused_and_no_node_changes(
    sim, newer_release_by_hand, pending
):
    """Taken over, it would be downgraded after the nodes lost kube-proxy: the preflight refuses
    it in one line naming both versions, and no node and no revision changes."""
    revisions = sim.helm_revisions()
    run = sim.pyinfra("-y")

    assert_refused(sim, run, pending, "the cluster checks failed", {"@local"})
    said = [line for line in run.log.splitlines() if "newer than the pinned" in line]
    assert len(said) == 1, run.log
    assert (
        "release kube-system/cilium runs chart cilium 1.20.0, newer than the pinned 1.19.6"
        in said[0]
    )
    assert "cilium_release_takeover = True" in said[0]
    assert sim.helm_revisions() == revisions


def test_a_failed_cluster_check_in_dry_without_yes_stops_without_a_prompt(sim, pending, tmp_path):
    """Without -y (and without --json), pyinfra asks "continue?" when one host fails and others
    are left; with no terminal that ended in EOFError. The preflight stops the run instead."""
    binary = tmp_path / "kubeconfig"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00\xd0\xff\xfe")
    proc = subprocess.run(
        sim.pyinfra_command("--dry", "--data", f"kubeconfig={binary}"),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=sim.env,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, log
    assert "continue?" not in log and "EOFError" not in log and "Traceback" not in log, log
    assert f"cilium-lab: kubeconfig {binary} is not a text file (not UTF-8)" in log
    assert "[@local] preflight: the cluster checks failed" in log
    assert sim.snapshot_all() == pending


@contextlib.contextmanager
def edited_on_node(sim, path: str, script: str):
    """``script`` run on NODE with ``path`` kept aside first, and put back afterwards."""
    sim.sh(NODE, f"cp -p {path} /root/e2e.kept && {script}")
    try:
        yield
    finally:
        sim.sh(NODE, f"cp -p /root/e2e.kept {path} && rm /root/e2e.kept")


@pytest.fixture
def loopback_name(sim):
    """The API server's name resolving to a loopback address on one node (as Debian's installer
    writes the host's own name to 127.0.1.1)."""
    with edited_on_node(
        sim,
        "/etc/hosts",
        "sed -i 's/ kubernetes\\b//' /etc/hosts && echo '127.0.1.1 kubernetes' >> /etc/hosts",
    ):
        yield


def test_api_name_on_loopback_on_a_node_is_refused(sim, loopback_name, pending):
    run = sim.pyinfra("-y")

    assert_refused(
        sim,
        run,
        pending,
        "'kubernetes' resolves to 127.0.1.1 on the node, a loopback address",
        {NODE},
    )


@pytest.fixture(params=["read-only", "full"])
def backup_without_room(sim, request):
    """The backups' file system read-only, or too small for what the migration moves."""
    options = "ro,size=1m" if request.param == "read-only" else "size=16k"
    sim.sh(
        NODE,
        f"mkdir -p /var/backups/cilium-lab && mount -t tmpfs -o {options} e2e /var/backups/cilium-lab",
    )
    if request.param == "full":
        sim.sh(NODE, "head -c 12k /dev/zero > /var/backups/cilium-lab/filler")
    try:
        yield request.param
    finally:
        sim.sh(NODE, "umount /var/backups/cilium-lab")


def test_backup_directory_without_room_is_refused(sim, backup_without_room, pending):
    run = sim.pyinfra("-y")

    expected = (
        "on a read-only file system"
        if backup_without_room == "read-only"
        else "KiB free, and the backups need"
    )
    assert_refused(sim, run, pending, expected, {NODE})


@pytest.fixture
def sudo_wants_a_password(sim):
    with edited_on_node(
        sim, "/etc/sudoers.d/ubuntu", "sed -i 's/NOPASSWD://' /etc/sudoers.d/ubuntu"
    ):
        yield


def test_sudo_that_wants_a_password_is_refused_without_a_prompt(
    sim, sudo_wants_a_password, pending
):
    run = sim.pyinfra("-y")

    assert_refused(sim, run, pending, "sudo asks ubuntu for a password", {NODE})
    assert "EOFError" not in run.log and "sudo password:" not in run.log


def test_a_node_unreachable_at_the_start_leaves_every_node_unchanged(sim, pending, tmp_path):
    """Not connected, a node would be dropped by pyinfra and the others migrated without it: a
    cluster half on the old network. The run stops, names it and says how to go on without it."""
    inventory = tmp_path / "inventory.py"
    # Nothing listens on port 2 of the node: the connection is refused at once.
    inventory.write_text(
        sim.inventory.read_text() + '\ncontrol = [(n, {**d, "ssh_port": 2}) if n == "control2" '
        "else (n, d) for n, d in control]\n"
    )
    run = run_on(sim, inventory, "--group-data", str(GROUP_DATA))

    assert_refused(
        sim, run, pending, "leave it out of this run with --exclude control2", {"control2"}
    )


def test_two_runs_at_once_one_refuses_and_the_rollback_loses_nothing(sim):
    """Both start together; the first to take the first node's lock goes on, the other stops
    before any change, naming it. Rolled back afterwards, every node is as before."""
    # From the guide's state whatever ran before: migrated (a no-op if it was), then rolled
    # back, which needs the migration's records.
    migrated = sim.pyinfra("-y")
    assert migrated.returncode == 0, migrated.log
    rolled_back = sim.pyinfra("-y", deploy=ROLLBACK)
    assert rolled_back.returncode == 0, rolled_back.log
    before = sim.snapshot_all()

    procs = [
        subprocess.Popen(
            sim.pyinfra_command("--json", "-y"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=sim.env,
        )
        for _ in range(2)
    ]
    runs = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        runs.append(Run(proc.returncode, _json_or_none(out), err))

    done = [run for run in runs if run.returncode == 0]
    refused = [run for run in runs if run.returncode != 0]
    assert len(done) == 1 and len(refused) == 1, [run.log for run in runs]
    assert "another run is changing this node" in refused[0].log, refused[0].log
    assert "Starting operation" not in refused[0].log and "Traceback" not in refused[0].log
    assert done[0].hosts_changed() == set(sim.nodes) | {"@local"}

    back = sim.pyinfra("-y", deploy=ROLLBACK)
    assert back.returncode == 0, back.log
    # Our backup directory may rightly keep what the round trip left there; units restart.
    after = {node: comparable(snap) for node, snap in sim.snapshot_all().items()}
    before = {node: comparable(snap) for node, snap in before.items()}
    assert after == before, differences(before, after)

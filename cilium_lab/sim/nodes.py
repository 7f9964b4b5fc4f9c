"""
The nodes: systemd-nspawn containers booting systemd on an overlay over the cached root.

A node's own changes live in its overlay's upper directory, so stopping and starting a node keeps
them (a test can take one node down and bring it back); ``down`` throws them away, and the next
``up`` starts from the guide's state again.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import click

from cilium_lab.sim import SimError, controlplane, guide, network, realnode, rootfs
from cilium_lab.sim.config import SimConfig

APT_INSTALL = "apt-get install systemd-container debootstrap iproute2 openssh-client"
STOP_TIMEOUT = 30
# systemd reports these once boot is over; "degraded" (a failed unit) is still a booted node.
BOOTED = ("running", "degraded")

# Popen objects of nodes this process started: polled so that stopped ones get reaped.
_children: dict[int, subprocess.Popen] = {}


# Checks before any change.


def check_platform() -> None:
    if not sys.platform.startswith("linux"):
        raise SimError(
            f"the sim needs Linux (systemd-nspawn, network namespaces); this is {sys.platform}"
        )
    if os.geteuid() != 0:
        raise SimError(
            "the sim needs root (it mounts overlays, creates a bridge and boots containers); run it with sudo"
        )


def preflight(need_debootstrap: bool = False) -> None:
    check_platform()
    tools = ["systemd-nspawn", "ip", "nsenter", "ssh-keygen", "mount", "umount"]
    if need_debootstrap:
        tools.append("debootstrap")
    missing = [tool for tool in tools if not shutil.which(tool)]
    if missing:
        raise SimError(f"missing {', '.join(missing)}; install them with: {APT_INSTALL}")
    if "overlay" not in Path("/proc/filesystems").read_text():
        raise SimError("the kernel has no overlay filesystem (try: modprobe overlay)")


@contextmanager
def locked(sim_home: Path):
    """One command at a time changes a sim."""
    sim_home.mkdir(parents=True, exist_ok=True)
    with open(sim_home / "lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SimError(f"another cilium-lab sim command is working on {sim_home}") from None
        yield


# Processes.


def _alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        del _children[pid]
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # A zombie is dead even if nobody reaped it yet.
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def nspawn_pid(cfg: SimConfig, name: str) -> int | None:
    """The node's systemd-nspawn process, if it runs (checked against its command line)."""
    directory = b"--directory=" + str(cfg.node_dir(name) / "merged").encode()
    try:
        pid = int((cfg.node_dir(name) / "nspawn.pid").read_text())
    except (FileNotFoundError, ValueError):
        pid = None
    if pid is not None and _is_nspawn_of(pid, directory):
        return pid
    # A start interrupted between launching nspawn and writing its pid file leaves a node that
    # only its command line tells: found here, `down` and `stop` still stop it.
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _is_nspawn_of(int(entry.name), directory):
            return int(entry.name)
    return None


def _is_nspawn_of(pid: int, directory: bytes) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    return cmdline[0].endswith(b"systemd-nspawn") and directory in cmdline and _alive(pid)


def leader_pid(cfg: SimConfig, name: str) -> int | None:
    """The node's PID 1 (nspawn's child), for nsenter."""
    pid = nspawn_pid(cfg, name)
    if pid is None:
        return None
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            return int(stat.parent.name)
    return None


# Each node's systemd holds several inotify instances, all charged to root: the kernel's default
# of 128 runs out at about 18 nodes on the machine. Raised only when lower (kind asks the same).
INOTIFY_LIMITS = {"fs/inotify/max_user_instances": 1024, "fs/inotify/max_user_watches": 524288}


def raise_inotify_limits(echo=click.echo) -> None:
    for key, wanted in INOTIFY_LIMITS.items():
        path = Path("/proc/sys") / key
        current = int(path.read_text())
        if current < wanted:
            path.write_text(f"{wanted}\n")
            echo(
                f"raised {key.replace('/', '.')} from {current} to {wanted} (systemd in every node needs some)"
            )


# Cgroups. nspawn --keep-unit runs a node in the cgroup it is started in, and each node's systemd
# takes that cgroup as its root: nodes sharing one would tear down each other's units.

CGROUP_PARENT = "cilium-lab"


def _cgroup_roots() -> list[Path]:
    """The hierarchies systemd uses: cgroup v2 (all of /sys/fs/cgroup or .../unified) and v1 name=systemd."""
    roots = []
    for line in Path("/proc/mounts").read_text().splitlines():
        _, mountpoint, fstype, options = line.split()[:4]
        if fstype == "cgroup2" or (fstype == "cgroup" and "name=systemd" in options.split(",")):
            roots.append(Path(mountpoint))
    return roots


def _node_cgroups(cfg: SimConfig, name: str) -> list[Path]:
    return [root / CGROUP_PARENT / cfg.machine(name) for root in _cgroup_roots()]


def _enter_cgroups(paths: list[Path]):
    def enter():
        for path in paths:
            (path / "cgroup.procs").write_text("0\n")

    return enter


def _remove_cgroups(cfg: SimConfig, name: str, wait: float = 10.0) -> None:
    """Remove a stopped node's cgroup trees, deepest first (rmdir is the only way to delete one).

    A cgroup stays busy until its last process is gone: a real node's (kube-apiserver's, say)
    may still be exiting when nspawn has, so a busy one is tried again for ``wait`` seconds."""
    deadline = time.monotonic() + wait
    for top in _node_cgroups(cfg, name):
        while top.is_dir():
            for dirpath, _, _ in sorted(os.walk(top), key=lambda entry: -entry[0].count("/")):
                try:
                    os.rmdir(dirpath)
                except OSError:
                    pass
            if not top.is_dir() or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        try:
            os.rmdir(top.parent)  # cilium-lab/, once no sim's node is left in it
        except OSError:
            pass


# One node.


def mounted(path: Path) -> bool:
    return any(
        line.split()[1] == str(path) for line in Path("/proc/mounts").read_text().splitlines()
    )


def start_node(cfg: SimConfig, name: str) -> None:
    """Boot a node (its changes so far kept); returns once nspawn runs, not when it has booted."""
    if nspawn_pid(cfg, name) is not None:
        return
    if not rootfs.is_built(Path(cfg.rootfs)):
        raise SimError(
            f"the root {cfg.rootfs} of this sim is gone; run: cilium-lab sim down && cilium-lab sim up"
        )
    node = cfg.node_dir(name)
    upper, work, merged = node / "upper", node / "work", node / "merged"
    fresh = not upper.exists()
    for d in (upper, work, merged):
        d.mkdir(parents=True, exist_ok=True)
    if not mounted(merged):
        subprocess.run(
            [
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                f"lowerdir={cfg.rootfs},upperdir={upper},workdir={work}",
                str(merged),
            ],
            check=True,
            capture_output=True,
        )
    if fresh or not (node / "provisioned").exists():
        files, links = controlplane.node_files(cfg, name) if cfg.control_plane else ({}, {})
        guide.provision(cfg, name, merged, files, links)
        (node / "provisioned").touch()
    netns_path = network.node_net_up(cfg, name)

    env = dict(os.environ)
    # Without it the node sees the host's hybrid cgroup v1 layout; Cilium wants cgroup v2 there.
    env["SYSTEMD_NSPAWN_UNIFIED_HIERARCHY"] = "1"
    real = realnode.nspawn_arguments(cfg, name) if cfg.data_plane == "real" else []
    if real:
        env.update(realnode.NSPAWN_ENV)
    cmd = [
        "systemd-nspawn",
        "--quiet",
        f"--directory={merged}",
        "--boot",
        f"--machine={cfg.machine(name)}",
        f"--hostname={name}",
        # No system bus on a host without systemd: nothing to register with.
        "--register=no",
        "--keep-unit",
        # nspawn keeps CAP_NET_ADMIN only for networks it creates itself; the node's iptables
        # (kube-proxy's chains) need it in the namespace made here.
        "--capability=CAP_NET_ADMIN",
        f"--network-namespace-path={netns_path}",
        "--resolv-conf=off",
        "--timezone=off",
        # The control plane's programs and kwok, where the guide puts binaries.
        *(
            f"--bind-ro={path}:{controlplane.NODE_BIN}/{program}"
            for program, path in sorted(cfg.programs.items())
        ),
        *real,
    ]
    _remove_cgroups(cfg, name)
    cgroups = _node_cgroups(cfg, name)
    for path in cgroups:
        path.mkdir(parents=True, exist_ok=True)
    with open(node / "console.log", "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_enter_cgroups(cgroups),
        )
    _children[proc.pid] = proc
    (node / "nspawn.pid").write_text(f"{proc.pid}\n")


def _stop_signal(cfg: SimConfig, name: str) -> int | None:
    pid = nspawn_pid(cfg, name)
    if pid is not None:
        # nspawn turns SIGTERM into a clean poweroff of the node's systemd.
        os.kill(pid, signal.SIGTERM)
    return pid


def _stop_finish(cfg: SimConfig, name: str, pid: int | None, deadline: float) -> None:
    if pid is not None:
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            leader = leader_pid(cfg, name)
            for victim in (leader, pid):
                if victim:
                    try:
                        os.kill(victim, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            while _alive(pid) and time.monotonic() < deadline + 10:
                time.sleep(0.2)
    merged = cfg.node_dir(name) / "merged"
    for _attempt in range(10):
        if not mounted(merged):
            break
        if subprocess.run(["umount", str(merged)], capture_output=True).returncode != 0:
            time.sleep(0.5)
    if mounted(merged):
        subprocess.run(["umount", "--lazy", str(merged)], capture_output=True)
    network.node_net_down(cfg, name)
    _remove_cgroups(cfg, name)
    propagate = Path("/run/systemd/nspawn/propagate") / cfg.machine(name)
    if propagate.is_dir() and not mounted(propagate):
        shutil.rmtree(propagate, ignore_errors=True)
    (cfg.node_dir(name) / "nspawn.pid").unlink(missing_ok=True)


def stop_nodes(cfg: SimConfig, names: list[str], timeout: float = STOP_TIMEOUT) -> None:
    """Power nodes off together (keeping their changes), then release their mounts and network."""
    pids = {name: _stop_signal(cfg, name) for name in names}
    deadline = time.monotonic() + timeout
    for name in names:
        _stop_finish(cfg, name, pids[name], deadline)


# Readiness.


def _sshd_banner(address: str) -> bool:
    try:
        with socket.create_connection((address, 22), timeout=1) as sock:
            sock.settimeout(2)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def booted(cfg: SimConfig, name: str) -> str:
    leader = leader_pid(cfg, name)
    if leader is None:
        return "starting"
    proc = subprocess.run(
        ["nsenter", "-t", str(leader), "-a", "systemctl", "is-system-running"],
        capture_output=True,
        text=True,
    )
    return proc.stdout.strip() or "starting"


def ssh_login(cfg: SimConfig, name: str, timeout: float = 5) -> str | None:
    """Log in as pyinfra will (key, strict host key check, sudo); None when it works, else why not."""
    import paramiko  # pyinfra's SSH library

    client = paramiko.SSHClient()
    client.load_host_keys(str(cfg.known_hosts))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        client.connect(
            str(cfg.address(name)),
            username="ubuntu",
            key_filename=str(cfg.ssh_key),
            timeout=timeout,
            banner_timeout=timeout,
            auth_timeout=timeout,
            look_for_keys=False,
            allow_agent=False,
        )
        _, stdout, _ = client.exec_command("sudo -n true && echo ok", timeout=timeout)
        out = stdout.read().decode().strip()
        return None if out == "ok" else f"sudo failed: {out!r}"
    except Exception as e:  # paramiko raises many kinds; all mean "not reachable" here
        return f"{type(e).__name__}: {e}".strip()
    finally:
        client.close()


def wait_ready(cfg: SimConfig, names: list[str], timeout: float, echo=click.echo) -> None:
    """Wait until each node has finished booting and answers SSH, printing progress."""
    started = time.monotonic()
    pending = {name: "starting" for name in names}
    last_report = 0.0
    while pending:
        for name in list(pending):
            if nspawn_pid(cfg, name) is None:
                raise SimError(
                    f"node {name} exited while booting; see {cfg.node_dir(name) / 'console.log'}"
                )
            system = booted(cfg, name)
            if system not in BOOTED:
                pending[name] = f"systemd {system}"
            elif not _sshd_banner(str(cfg.address(name))):
                pending[name] = "sshd not answering"
            else:
                del pending[name]
        elapsed = time.monotonic() - started
        if pending and (elapsed - last_report >= 2 or not last_report):
            last_report = elapsed or 0.01
            waiting = ", ".join(f"{name} ({why})" for name, why in pending.items())
            echo(
                f"  [{elapsed:3.0f}s] {len(names) - len(pending)}/{len(names)} nodes booted; waiting for {waiting}"
            )
        if pending and elapsed > timeout:
            first = next(iter(pending))
            raise SimError(
                f"timed out after {timeout:.0f}s waiting for {', '.join(pending)} to boot; "
                f"see {cfg.node_dir(first) / 'console.log'}"
            )
        if pending:
            time.sleep(0.3)
    with ThreadPoolExecutor(max_workers=16) as pool:
        failures = [
            (n, err)
            for n, err in zip(names, pool.map(lambda n: ssh_login(cfg, n), names), strict=True)
            if err
        ]
    if failures:
        name, err = failures[0]
        raise SimError(f"node {name} booted but SSH login as ubuntu failed: {err}")
    echo(
        f"  [{time.monotonic() - started:3.0f}s] {len(names)}/{len(names)} nodes booted, SSH login and sudo work"
    )

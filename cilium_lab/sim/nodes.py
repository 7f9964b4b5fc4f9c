"""
The nodes: systemd-nspawn containers booting systemd on an overlay over the cached root.

A node's own changes live in its overlay's upper directory, so stopping and starting a node keeps
them (a test can take one node down and bring it back); ``down`` throws them away, and the next
``up`` starts from the guide's state again.
"""

from __future__ import annotations

import fcntl
import json
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

from cilium_lab.sim import SimError, network, rootfs
from cilium_lab.sim.config import SimConfig, default_bridge, default_subnet, home, node_names, validate

APT_INSTALL = "apt-get install systemd-container debootstrap iproute2 openssh-client"
STOP_TIMEOUT = 30
# systemd reports these once boot is over; "degraded" (a failed unit) is still a booted node.
BOOTED = ("running", "degraded")

# Popen objects of nodes this process started: polled so that stopped ones get reaped.
_children: dict[int, subprocess.Popen] = {}


# Checks before any change.


def check_platform() -> None:
    if not sys.platform.startswith("linux"):
        raise SimError(f"the sim needs Linux (systemd-nspawn, network namespaces); this is {sys.platform}")
    if os.geteuid() != 0:
        raise SimError("the sim needs root (it mounts overlays, creates a bridge and boots containers); run it with sudo")


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


def load() -> SimConfig:
    check_platform()
    cfg = SimConfig.load()
    if cfg is None:
        raise SimError(f"the sim is not up (no state in {home()}); run: cilium-lab sim up")
    return cfg


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


def node_exec(cfg: SimConfig, name: str, command: list[str], check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run a command inside a running node, in all its namespaces, as root."""
    leader = leader_pid(cfg, name)
    if leader is None:
        raise SimError(f"node {name} is not running")
    proc = subprocess.run(["nsenter", "-t", str(leader), "-a", *command], capture_output=True, text=True, **kwargs)
    if check and proc.returncode != 0:
        raise SimError(f"{name}: {' '.join(command)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


# Per-node files, written into the overlay before the first boot.


def _variant(index: int) -> dict[str, str]:
    """
    Files that differ between nodes the way they do on hand-built labs: br_netfilter in the
    guide's cloud-init file, beside other modules, in a user's own file, and non-CNI files in the
    CNI directory. The deploy must remove only the br_netfilter lines and CNI configurations.
    """
    files = {"/etc/modules-load.d/cloud-init.conf": "br_netfilter\n"}
    if index % 3 == 1:
        files["/etc/modules-load.d/cloud-init.conf"] = "overlay\nbr_netfilter\n"
        files["/etc/modules-load.d/k8s.conf"] = "# containerd and kube-proxy need these\noverlay\nbr_netfilter\n"
    elif index % 3 == 2:
        files["/etc/modules-load.d/containerd.conf"] = "overlay\n"
        files["/etc/cni/net.d/README"] = "CNI configuration for this node: see the guide, chapter 6.\n"
        files["/etc/cni/net.d/10-bridge.conf.orig"] = "{}\n"
    return files


def _cni_files(pod_cidr: str) -> dict[str, str]:
    bridge = {
        "cniVersion": "1.0.0",
        "name": "bridge",
        "type": "bridge",
        "bridge": "cnio0",
        "isGateway": True,
        "ipMasq": True,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": pod_cidr}]], "routes": [{"dst": "0.0.0.0/0"}]},
    }
    loopback = {"cniVersion": "1.1.0", "name": "lo", "type": "loopback"}
    return {
        "/etc/cni/net.d/10-bridge.conf": json.dumps(bridge, indent=2) + "\n",
        "/etc/cni/net.d/99-loopback.conf": json.dumps(loopback, indent=2) + "\n",
    }


def _ensure_keypair(path: Path, comment: str) -> None:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True
        )


def _provision(cfg: SimConfig, name: str, merged: Path) -> None:
    index = cfg.index(name)
    hosts = [
        "127.0.0.1 localhost",
        f"127.0.1.1 {name}",
        "::1 localhost ip6-localhost ip6-loopback",
        # LAB.md: "kubernetes" is the load balancer's name; in the sim the gateway is this machine.
        f"{cfg.bridge_address} gateway kubernetes",
        *(f"{cfg.address(node)} {node}" for node in cfg.nodes),
    ]
    files = {
        "/etc/hostname": f"{name}\n",
        "/etc/hosts": "\n".join(hosts) + "\n",
        **_cni_files(cfg.pod_cidr(name)),
        **_variant(index),
    }
    for path, text in files.items():
        target = merged / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    # Host key made here, so its public half is in known_hosts before the node ever boots.
    host_key = cfg.node_dir(name) / "ssh_host_ed25519_key"
    _ensure_keypair(host_key, f"root@{name}")
    for suffix, mode in (("", 0o600), (".pub", 0o644)):
        target = merged / "etc/ssh" / f"ssh_host_ed25519_key{suffix}"
        shutil.copyfile(f"{host_key}{suffix}", target)
        target.chmod(mode)

    uid, gid = _ubuntu_ids(merged)
    ssh_dir = merged / "home/ubuntu/.ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    keys = ssh_dir / "authorized_keys"
    shutil.copyfile(f"{cfg.ssh_key}.pub", keys)
    keys.chmod(0o600)
    for path in (ssh_dir, keys):
        os.chown(path, uid, gid)


def _ubuntu_ids(root: Path) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == "ubuntu":
            return int(fields[2]), int(fields[3])
    raise SimError(f"no ubuntu user in {root}; rebuild the root (delete it)")


def write_known_hosts(cfg: SimConfig) -> None:
    lines = []
    for name in cfg.nodes:
        key_type, key = Path(cfg.node_dir(name) / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        lines.append(f"{cfg.address(name)},{name} {key_type} {key}")
    cfg.known_hosts.write_text("\n".join(lines) + "\n")


# Each node's systemd holds several inotify instances, all charged to root: the kernel's default
# of 128 runs out at about 18 nodes on the machine. Raised only when lower (kind asks the same).
INOTIFY_LIMITS = {"fs/inotify/max_user_instances": 1024, "fs/inotify/max_user_watches": 524288}


def raise_inotify_limits(echo=click.echo) -> None:
    for key, wanted in INOTIFY_LIMITS.items():
        path = Path("/proc/sys") / key
        current = int(path.read_text())
        if current < wanted:
            path.write_text(f"{wanted}\n")
            echo(f"raised {key.replace('/', '.')} from {current} to {wanted} (systemd in every node needs some)")


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


def _remove_cgroups(cfg: SimConfig, name: str) -> None:
    """Remove a stopped node's cgroup trees, deepest first (rmdir is the only way to delete one)."""
    for top in _node_cgroups(cfg, name):
        if not top.is_dir():
            continue
        for dirpath, _, _ in sorted(os.walk(top), key=lambda entry: -entry[0].count("/")):
            try:
                os.rmdir(dirpath)
            except OSError:
                pass
        try:
            os.rmdir(top.parent)  # cilium-lab/, once no sim's node is left in it
        except OSError:
            pass


# One node.


def _mounted(path: Path) -> bool:
    return any(line.split()[1] == str(path) for line in Path("/proc/mounts").read_text().splitlines())


def start_node(cfg: SimConfig, name: str) -> None:
    """Boot a node (its changes so far kept); returns once nspawn runs, not when it has booted."""
    if nspawn_pid(cfg, name) is not None:
        return
    if not rootfs.is_built(Path(cfg.rootfs)):
        raise SimError(f"the root {cfg.rootfs} of this sim is gone; run: cilium-lab sim down && cilium-lab sim up")
    node = cfg.node_dir(name)
    upper, work, merged = node / "upper", node / "work", node / "merged"
    fresh = not upper.exists()
    for d in (upper, work, merged):
        d.mkdir(parents=True, exist_ok=True)
    if not _mounted(merged):
        subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={cfg.rootfs},upperdir={upper},workdir={work}", str(merged)],
            check=True,
            capture_output=True,
        )
    if fresh or not (node / "provisioned").exists():
        _provision(cfg, name, merged)
        (node / "provisioned").touch()
    netns_path = network.node_net_up(cfg, name)

    env = dict(os.environ)
    # Without it the node sees the host's hybrid cgroup v1 layout; Cilium wants cgroup v2 there.
    env["SYSTEMD_NSPAWN_UNIFIED_HIERARCHY"] = "1"
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
    for attempt in range(10):
        if not _mounted(merged):
            break
        if subprocess.run(["umount", str(merged)], capture_output=True).returncode != 0:
            time.sleep(0.5)
    if _mounted(merged):
        subprocess.run(["umount", "--lazy", str(merged)], capture_output=True)
    network.node_net_down(cfg, name)
    _remove_cgroups(cfg, name)
    propagate = Path("/run/systemd/nspawn/propagate") / cfg.machine(name)
    if propagate.is_dir() and not _mounted(propagate):
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


def _booted(cfg: SimConfig, name: str) -> str:
    leader = leader_pid(cfg, name)
    if leader is None:
        return "starting"
    proc = subprocess.run(
        ["nsenter", "-t", str(leader), "-a", "systemctl", "is-system-running"], capture_output=True, text=True
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
                raise SimError(f"node {name} exited while booting; see {cfg.node_dir(name) / 'console.log'}")
            system = _booted(cfg, name)
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
            echo(f"  [{elapsed:3.0f}s] {len(names) - len(pending)}/{len(names)} nodes booted; waiting for {waiting}")
        if pending and elapsed > timeout:
            raise SimError(
                f"timed out after {timeout:.0f}s waiting for {', '.join(pending)} to boot; "
                f"see {cfg.node_dir(pending[0]) / 'console.log'}"
            )
        if pending:
            time.sleep(0.3)
    with ThreadPoolExecutor(max_workers=16) as pool:
        failures = [(n, err) for n, err in zip(names, pool.map(lambda n: ssh_login(cfg, n), names)) if err]
    if failures:
        name, err = failures[0]
        raise SimError(f"node {name} booted but SSH login as ubuntu failed: {err}")
    echo(f"  [{time.monotonic() - started:3.0f}s] {len(names)}/{len(names)} nodes booted, SSH login and sudo work")


# The whole sim.


def up(
    count: int | None = None,
    bridge: str | None = None,
    subnet: str | None = None,
    inventory: Path | None = None,
    timeout: float = 180,
    echo=click.echo,
) -> SimConfig:
    from cilium_lab.sim.inventory import default_inventory_path, write_inventory

    check_platform()
    sim_home = home()
    existing = SimConfig.load(sim_home)
    if existing is not None:
        preflight()
        if count is not None and count != len(existing.nodes):
            raise SimError(f"the sim is up with {len(existing.nodes)} nodes, not {count}; run: cilium-lab sim down")
        for option, wanted, actual in (("bridge", bridge, existing.bridge), ("subnet", subnet, existing.subnet)):
            if wanted is not None and wanted != actual:
                raise SimError(f"the sim is up with {option} {actual}, not {wanted}; run: cilium-lab sim down")
        with locked(sim_home):
            stopped = [name for name in existing.nodes if nspawn_pid(existing, name) is None]
            if not stopped:
                echo(f"the sim is already up: {len(existing.nodes)} nodes on {existing.bridge} ({existing.subnet})")
            else:
                echo(f"the sim is up; starting stopped nodes: {', '.join(stopped)}")
                network.bridge_up(existing)
                raise_inotify_limits(echo)
                for name in stopped:
                    start_node(existing, name)
                wait_ready(existing, stopped, timeout, echo)
            write_inventory(existing, Path(existing.inventory))
        return existing

    count = 6 if count is None else count
    bridge = bridge or default_bridge()
    subnet = subnet or default_subnet()
    validate(bridge, subnet, count)
    inventory = Path(inventory or default_inventory_path()).absolute()
    if not inventory.parent.is_dir():
        raise SimError(f"cannot write the inventory {inventory}: no directory {inventory.parent}")
    preflight(need_debootstrap=not rootfs.is_built(rootfs.rootfs_path()))
    cfg = SimConfig(
        home=str(sim_home.absolute()), bridge=bridge, subnet=subnet, nodes=node_names(count), inventory=str(inventory)
    )
    network.check_free(cfg)

    with locked(sim_home):
        cfg.rootfs = str(rootfs.ensure_rootfs(echo))
        started = time.monotonic()
        # From here on `down` knows what to remove, even if the rest fails.
        cfg.save()
        _ensure_keypair(cfg.ssh_key, "cilium-lab-sim")
        network.bridge_up(cfg)
        raise_inotify_limits(echo)
        echo(f"booting {count} nodes on {cfg.bridge} ({cfg.subnet}) in {cfg.home}")
        for name in cfg.nodes:
            start_node(cfg, name)
        write_known_hosts(cfg)
        wait_ready(cfg, cfg.nodes, timeout, echo)
        write_inventory(cfg, inventory)
    echo(f"the sim is up ({time.monotonic() - started:.0f}s); inventory: {inventory}")
    return cfg


def down(echo=click.echo) -> bool:
    """Remove every trace of the sim: containers, mounts, veths, namespaces, bridge, node state."""
    check_platform()
    sim_home = home()
    cfg = SimConfig.load(sim_home)
    if cfg is None:
        echo(f"the sim is not up (no state in {sim_home}); nothing to do")
        return False
    preflight()
    with locked(sim_home):
        running = [name for name in cfg.nodes if nspawn_pid(cfg, name) is not None]
        if running:
            echo(f"stopping {len(running)} nodes")
        stop_nodes(cfg, cfg.nodes)
        network.bridge_down(cfg)
        leftovers = [n for n in cfg.nodes if _mounted(cfg.node_dir(n) / "merged")]
        if leftovers:
            raise SimError(f"could not unmount {', '.join(leftovers)}; retry: cilium-lab sim down")
        shutil.rmtree(cfg.path / "nodes", ignore_errors=True)
        inventory = Path(cfg.inventory) if cfg.inventory else None
        if inventory and inventory.exists() and _written_by_sim(inventory, cfg):
            inventory.unlink()
        cfg.known_hosts.unlink(missing_ok=True)
        cfg.state_file.unlink()
    echo("the sim is down")
    return True


def _written_by_sim(inventory: Path, cfg: SimConfig) -> bool:
    return f"home: {cfg.home}" in inventory.read_text()


def start(names: list[str], timeout: float = 180, echo=click.echo) -> None:
    cfg = load()
    preflight()
    for name in names:
        cfg.index(name)
    with locked(cfg.path):
        network.bridge_up(cfg)
        raise_inotify_limits(echo)
        for name in names:
            start_node(cfg, name)
        wait_ready(cfg, names, timeout, echo)


def stop(names: list[str], echo=click.echo) -> None:
    cfg = load()
    preflight()
    for name in names:
        cfg.index(name)
    with locked(cfg.path):
        stop_nodes(cfg, names)
    echo(f"stopped {', '.join(names)} (their changes are kept; cilium-lab sim start brings them back)")


def status(cfg: SimConfig) -> list[dict]:
    def one(name: str) -> dict:
        running = nspawn_pid(cfg, name) is not None
        info = {"name": name, "address": str(cfg.address(name)), "running": running, "system": "-", "ssh": "-"}
        if running:
            info["system"] = _booted(cfg, name)
            info["ssh"] = ssh_login(cfg, name) or "ok"
        return info

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(one, cfg.nodes))

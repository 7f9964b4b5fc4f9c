"""
The nodes' shared root filesystem: Debian with systemd, sshd, sudo and the guide's units, built
once with debootstrap and cached.

The cache key is a hash of this file (the whole recipe lives here) and the mirror, so editing the
recipe builds a new root beside the old one; a root that a running sim still uses as its overlay's
lower layer is never touched.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import click

from cilium_lab.sim import SimError
from cilium_lab.sim.config import cache_dir

SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PACKAGES = [
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "sudo",
    "iproute2",
    "iptables",
    "kmod",
    "procps",
    # The real data plane: the runc wrapper edits specs with jq; kube-proxy clears UDP
    # conntrack entries with conntrack.
    "jq",
    "conntrack",
]
STAMP = ".cilium-lab-stamp"

# Stand-ins for the guide's binaries: the units must be real, enabled and running; what they run
# only has to leave the traces the migration deals with.
KUBE_PROXY = r"""#!/bin/sh
# Stand-in for kube-proxy in iptables mode: it installs the kind of KUBE-* chains and jumps the
# real one does (and, like the real one, leaves them behind when stopped), then idles.
set -eu
chain() { iptables -w -t "$1" -N "$2" 2>/dev/null || true; }
rule() { t=$1; c=$2; shift 2; iptables -w -t "$t" -C "$c" "$@" 2>/dev/null || iptables -w -t "$t" -A "$c" "$@"; }

for c in KUBE-SERVICES KUBE-POSTROUTING KUBE-MARK-MASQ KUBE-NODEPORTS KUBE-PROXY-CANARY; do chain nat "$c"; done
rule nat PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
rule nat OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
rule nat POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
rule nat KUBE-MARK-MASQ -j MARK --or-mark 0x4000
rule nat KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
rule nat KUBE-POSTROUTING -j MARK --xor-mark 0x4000
rule nat KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
rule nat KUBE-SERVICES -m comment --comment "kubernetes service nodeports" -j KUBE-NODEPORTS

for c in KUBE-SERVICES KUBE-EXTERNAL-SERVICES KUBE-FORWARD KUBE-NODEPORTS KUBE-PROXY-FIREWALL KUBE-PROXY-CANARY; do
    chain filter "$c"
done
rule filter INPUT -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
rule filter INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS
rule filter INPUT -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
rule filter FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
rule filter FORWARD -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
rule filter OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
rule filter KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT

echo "kube-proxy stand-in: KUBE-* chains in place (config: $*)"
exec sleep infinity
"""

# What a real kubelet 1.34 writes into iptables at start (pkg/kubelet/kubelet_network_linux.go),
# so that the migration meets the kubelet's KUBE-* chains beside kube-proxy's, as on a real node.
# Run before the kubelet stand-in, and before kwok where kwok plays the kubelet.
KUBELET_IPTABLES = r"""#!/bin/sh
set -eu
chain() { iptables -w -t "$1" -N "$2" 2>/dev/null || true; }
chain mangle KUBE-IPTABLES-HINT
chain filter KUBE-FIREWALL
for t in mangle nat filter; do chain "$t" KUBE-KUBELET-CANARY; done
for c in INPUT OUTPUT; do
    iptables -w -C "$c" -j KUBE-FIREWALL 2>/dev/null || iptables -w -I "$c" -j KUBE-FIREWALL
done
rule() { iptables -w -C KUBE-FIREWALL "$@" 2>/dev/null || iptables -w -A KUBE-FIREWALL "$@"; }
rule ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" \
    -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
for t in mangle nat filter; do ip6tables -w -t "$t" -N KUBE-KUBELET-CANARY 2>/dev/null || true; done
ip6tables -w -t mangle -N KUBE-IPTABLES-HINT 2>/dev/null || true
"""

KUBELET = r"""#!/bin/sh
# Stand-in for kubelet: it writes the kubelet's own iptables chains, logs the CNI configurations
# it would load, then idles.
/usr/local/lib/cilium-lab/kubelet-iptables
echo "kubelet stand-in: CNI configurations: $(ls /etc/cni/net.d 2>/dev/null | tr '\n' ' ')"
exec sleep infinity
"""

CONTAINERD = """#!/bin/sh
# Stand-in for containerd.
exec sleep infinity
"""

# The guide's units (chapters 4-6), pointing at the stand-ins.
UNITS = {
    "containerd.service": """[Unit]
Description=containerd container runtime
Documentation=https://containerd.io
After=network.target

[Service]
ExecStart=/usr/local/bin/containerd
Restart=always
RestartSec=5
Delegate=yes
KillMode=process
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
""",
    "kubelet.service": """[Unit]
Description=Kubernetes Kubelet
Documentation=https://github.com/kubernetes/kubernetes
After=containerd.service
Requires=containerd.service

[Service]
ExecStart=/usr/local/bin/kubelet \\
  --config=/var/lib/kubelet/kubelet-config.yaml \\
  --kubeconfig=/var/lib/kubelet/kubeconfig \\
  --v=2
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
""",
    "kube-proxy.service": """[Unit]
Description=Kubernetes Kube Proxy
Documentation=https://github.com/kubernetes/kubernetes

[Service]
ExecStart=/usr/local/bin/kube-proxy \\
  --config=/var/lib/kube-proxy/kube-proxy-config.yaml
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
""",
}

KUBE_PROXY_CONFIG = """kind: KubeProxyConfiguration
apiVersion: kubeproxy.config.k8s.io/v1alpha1
clientConnection:
  kubeconfig: "/var/lib/kube-proxy/kubeconfig"
mode: "iptables"
clusterCIDR: "10.0.0.0/8"
"""

SSHD_CONFIG = """# cilium-lab sim: key login only, one host key per node (written before boot).
HostKey /etc/ssh/ssh_host_ed25519_key
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UseDNS no
"""

SUDOERS = "ubuntu ALL=(ALL) NOPASSWD:ALL\n"

# Files the recipe writes into the root: path -> (mode, content).
FILES = {
    "/usr/local/bin/kube-proxy": (0o755, KUBE_PROXY),
    "/usr/local/bin/kubelet": (0o755, KUBELET),
    "/usr/local/lib/cilium-lab/kubelet-iptables": (0o755, KUBELET_IPTABLES),
    "/usr/local/bin/containerd": (0o755, CONTAINERD),
    "/var/lib/kube-proxy/kube-proxy-config.yaml": (0o644, KUBE_PROXY_CONFIG),
    "/etc/ssh/sshd_config.d/cilium-lab.conf": (0o644, SSHD_CONFIG),
    "/etc/sudoers.d/ubuntu": (0o440, SUDOERS),
    **{f"/etc/systemd/system/{name}": (0o644, text) for name, text in UNITS.items()},
}

CHROOT_STEPS = [
    # sshd_config.d is read only from bookworm's default config; nodes get host keys of their own.
    ["sh", "-c", "rm -f /etc/ssh/ssh_host_*"],
    ["useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", "ubuntu"],
    # "*": no password, but not a locked account (sshd refuses key logins to locked ones).
    ["usermod", "--password", "*", "ubuntu"],
    ["mkdir", "-p", "/opt/cni/bin", "/var/lib/kubelet", "/etc/cni/net.d"],
]


def mirror() -> str:
    return os.environ.get("CILIUM_LAB_DEBIAN_MIRROR") or DEFAULT_MIRROR


def recipe_hash() -> str:
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(mirror().encode())
    return digest.hexdigest()[:16]


def rootfs_path() -> Path:
    return cache_dir() / f"rootfs-{recipe_hash()}"


def is_built(path: Path) -> bool:
    stamp = path / STAMP
    return stamp.exists() and stamp.read_text().strip() == path.name.removeprefix("rootfs-")


def ensure_rootfs(echo=click.echo) -> Path:
    """Return the cached root for the current recipe, building it first if needed."""
    path = rootfs_path()
    if is_built(path):
        return path
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / "build.lock", "w") as lock:
        # Two sims coming up at once build once.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_built(path):
            return path
        _build(path, echo)
    _prune_unused(keep=path)
    return path


def _build(path: Path, echo) -> None:
    tmp = path.with_name(path.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    echo(f"building the node root filesystem in {path} (debootstrap {SUITE}, about a minute; once)")
    started = time.monotonic()
    cmd = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        SUITE,
        str(tmp),
        mirror(),
    ]
    run_debootstrap(cmd, echo, started)
    for step in CHROOT_STEPS:
        subprocess.run(["chroot", str(tmp), *step], check=True, stdout=subprocess.DEVNULL)
    for name, (mode, text) in FILES.items():
        target = tmp / name.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)
    wants = tmp / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    for name in UNITS:
        link = wants / name
        if not link.is_symlink():
            link.symlink_to(f"/etc/systemd/system/{name}")
    # Per node: debootstrap copies this machine's name, and an empty machine-id makes systemd
    # give every node its own.
    (tmp / "etc/hostname").unlink(missing_ok=True)
    (tmp / "etc/machine-id").write_text("")
    (tmp / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    (tmp / STAMP).write_text(path.name.removeprefix("rootfs-") + "\n")
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)
    echo(f"root filesystem ready ({time.monotonic() - started:.0f}s)")


def run_debootstrap(cmd: list[str], echo, started: float) -> None:
    """Run debootstrap printing one line per phase (not per package), keeping its log on failure."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log: list[str] = []
    seen: set[str] = set()
    assert proc.stdout
    for line in proc.stdout:
        log.append(line)
        words = line.split()
        # "Retrieving x", "Validating x", ... once per package: show each verb once.
        if len(words) >= 2 and words[0] == "I:" and words[1] not in seen:
            seen.add(words[1])
            echo(f"  [{time.monotonic() - started:3.0f}s] {line.strip()[3:]}")
    if proc.wait() != 0:
        sys.stderr.write("".join(log[-30:]))
        raise SimError(f"debootstrap failed (exit {proc.returncode}); see its output above")


def _prune_unused(keep: Path) -> None:
    """Delete roots of older recipes that no mounted overlay uses."""
    mounts = Path("/proc/mounts").read_text()
    for old in cache_dir().glob("rootfs-*"):
        if (
            old != keep
            and old.is_dir()
            and f"lowerdir={old}" not in mounts
            and str(old) not in mounts
        ):
            shutil.rmtree(old, ignore_errors=True)

"""
The guide's node state (LAB.md, "What is on every node before the chapter"), written into each
node's overlay before its first boot: names and addresses, the CNI configurations, the
br_netfilter persistence files (varied the way hand-built labs vary), and SSH keys.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from cilium_lab.sim import SimError
from cilium_lab.sim.config import SimConfig


def _variant(index: int) -> dict[str, str]:
    """
    Files that differ between nodes the way they do on hand-built labs: br_netfilter in the
    guide's cloud-init file, beside other modules, in a user's own file, and non-CNI files in the
    CNI directory. The deploy must remove only the br_netfilter lines and CNI configurations.
    """
    files = {"/etc/modules-load.d/cloud-init.conf": "br_netfilter\n"}
    if index % 3 == 1:
        files["/etc/modules-load.d/cloud-init.conf"] = "overlay\nbr_netfilter\n"
        files["/etc/modules-load.d/k8s.conf"] = (
            "# containerd and kube-proxy need these\noverlay\nbr_netfilter\n"
        )
    elif index % 3 == 2:
        files["/etc/modules-load.d/containerd.conf"] = "overlay\n"
        files["/etc/cni/net.d/README"] = (
            "CNI configuration for this node: see the guide, chapter 6.\n"
        )
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
        "ipam": {
            "type": "host-local",
            "ranges": [[{"subnet": pod_cidr}]],
            "routes": [{"dst": "0.0.0.0/0"}],
        },
    }
    loopback = {"cniVersion": "1.1.0", "name": "lo", "type": "loopback"}
    return {
        "/etc/cni/net.d/10-bridge.conf": json.dumps(bridge, indent=2) + "\n",
        "/etc/cni/net.d/99-loopback.conf": json.dumps(loopback, indent=2) + "\n",
    }


def ensure_keypair(path: Path, comment: str) -> None:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True,
        )


def provision(
    cfg: SimConfig,
    name: str,
    merged: Path,
    extra: dict[str, tuple[int, bytes]] | None = None,
    links: dict[str, str] | None = None,
) -> None:
    """Write the node's own files into its overlay before its first boot.

    ``extra``: more files (path -> mode, content), such as the control plane's; ``links``: symbolic
    links (path -> target), such as those that enable its units.
    """
    index = cfg.index(name)
    hosts = [
        "127.0.0.1 localhost",
        f"127.0.1.1 {name}",
        "::1 localhost ip6-localhost ip6-loopback",
        # LAB.md: "gateway" is the host's side; "kubernetes" the API server's address (the guide's
        # load balancer in front of it; the sim's one API server is on the first control node).
        f"{cfg.bridge_address} gateway",
        f"{cfg.address(cfg.api_node)} kubernetes",
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
    for path, (mode, content) in (extra or {}).items():
        target = merged / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)
    for path, pointee in (links or {}).items():
        target = merged / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        target.symlink_to(pointee)

    # Host key made here, so its public half is in known_hosts before the node ever boots.
    host_key = cfg.node_dir(name) / "ssh_host_ed25519_key"
    ensure_keypair(host_key, f"root@{name}")
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
        key_type, key = (
            Path(cfg.node_dir(name) / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        )
        lines.append(f"{cfg.address(name)},{name} {key_type} {key}")
    cfg.known_hosts.write_text("\n".join(lines) + "\n")

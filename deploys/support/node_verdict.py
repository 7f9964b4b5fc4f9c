"""
A node's verdict: what the preflight read on it (:class:`facts.preflight.NodePreflight`) in, the
problems that keep it from being migrated out, each with what to do about it.
"""

from __future__ import annotations

import ipaddress
import re

# Every check a node can fail, by the name used to skip it (data key ``preflight_skip``).
NODE_CHECKS = ("sudo", "systemd", "kernel", "cgroup", "api_name", "api_port", "cni_dir", "room")
# What the backups need beside a copy of the CNI directory: records and small persistence files.
SPARE_KIB = 64


def kernel_version(release: str) -> tuple[int, ...]:
    """``5.15.0-83-generic`` -> ``(5, 15, 0)``."""
    match = re.match(r"(\d+(?:\.\d+)*)", release)
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def is_loopback(address: str) -> bool:
    """Whether ``address`` (an IP or a name) is this machine's own: each agent would talk to itself."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def node_problems(
    state: dict,
    *,
    min_kernel: str,
    service_host: str,
    service_port: int,
    cgroup_root: str,
    user: str,
    conf_dir: str = "",
    backup_dirs=(),
    password_given: bool = False,
    skip=frozenset(),
) -> list[str]:
    """What keeps a node from being migrated, each with what to do about it."""
    if not state["kernel"]:
        # The command did not run at all: pyinfra has printed why just above.
        return [
            "the preflight command could not run (pyinfra says why above): check SSH to the node"
        ]

    who = user or "the SSH user"
    loopback = [a for a in state.get("addresses", []) if is_loopback(a)]
    need = state.get("conf_kib", 0) + SPARE_KIB
    checks = [
        (
            "sudo",
            state["root"] or state.get("sudo") or password_given,
            f"sudo asks {who} for a password: allow {who} sudo without one (NOPASSWD), or give it with "
            "--use-sudo-password or the _sudo_password data key",
        ),
        (
            "systemd",
            state["systemd"],
            "systemd is not running as PID 1: the migration acts on systemd units",
        ),
        (
            "kernel",
            kernel_version(state["kernel"]) >= kernel_version(min_kernel),
            f"kernel {state['kernel']} is older than {min_kernel}, the oldest the pinned Cilium supports: "
            "upgrade the node's kernel",
        ),
        (
            "cgroup",
            state["cgroup_fs"] == "cgroup2fs",
            f"no cgroup v2 mounted at {cgroup_root} (found {state['cgroup_fs'] or 'nothing'}): boot the node "
            "with cgroup v2 or set cilium_values cgroup.hostRoot to where it is mounted",
        ),
        (
            "api_name",
            state["resolves"],
            f"{service_host!r} does not resolve on the node: add it to the node's /etc/hosts or DNS "
            "(without kube-proxy, Cilium's agents find the API server only by this name)",
        ),
        (
            "api_name",
            not loopback,
            f"{service_host!r} resolves to {', '.join(loopback)} on the node, a loopback address: each agent "
            "would talk to itself; make it resolve to the API server's address, or set k8sServiceHost to it",
        ),
        # Unresolved or on loopback, the line above names the cause.
        (
            "api_port",
            state["reachable"] or not state["resolves"] or loopback,
            f"{service_host}:{service_port} does not answer from the node: check the load balancer and the "
            "node's firewall",
        ),
        (
            "cni_dir",
            not conf_dir or state.get("conf_dir", True),
            f"cni_conf_dir {conf_dir} does not exist on the node: set it to the directory kubelet reads "
            "CNI configurations from",
        ),
    ]
    # Backup directories usually share one file system: one line for all that share a problem.
    read_only = [
        path
        for path, room in zip(backup_dirs, state.get("room", []), strict=False)
        if room["read_only"]
    ]
    checks.append(
        (
            "room",
            not read_only,
            f"{', '.join(read_only)} {'is' if len(read_only) == 1 else 'are'} on a "
            "read-only file system: choose a writable place",
        )
    )
    short: dict[int, list[str]] = {}
    for path, room in zip(backup_dirs, state.get("room", []), strict=False):
        if not room["read_only"] and room["free_kib"] is not None and room["free_kib"] < need:
            short.setdefault(room["free_kib"], []).append(path)
    for free, paths in short.items():
        checks.append(
            (
                "room",
                False,
                f"{', '.join(paths)}: {free} KiB free, and the backups need {need} KiB: "
                "make room, or choose another place",
            )
        )
    return [message for name, ok, message in checks if not ok and name not in skip]

"""
What Cilium's agent leaves on a node once it is uninstalled.

The chart's agents go with ``helm uninstall``, but what they set up in the node's kernel stays:
its devices, its eBPF programs (still attached through the links pinned in the bpffs, so they
go on steering traffic over maps nothing updates), its iptables chains and its state
directory. ``cilium-dbg post-uninstall-cleanup`` (cilium v1.19.6,
``cilium-dbg/cmd/post_uninstall_cleanup.go``) removes the same; this is its list, read in one
command.
"""

from __future__ import annotations

import re

from pyinfra.api import FactBase

from facts.shell import script_command

# Cilium's own devices are cilium_* (cilium_host and its peer cilium_net, cilium_vxlan or
# cilium_geneve, cilium_wg0); an endpoint's host-side veth is lxc and 12 hex digits of a hash of
# its container, the health endpoint's lxc_health. Narrower than upstream's "lxc" prefix, so a
# node's LXC bridge (lxcbr0) stays.
LINK_PATTERN = re.compile(r"cilium_[A-Za-z0-9_]+|lxc_health|lxc[0-9a-f]{12}")

# Every chain the agent creates is CILIUM_… (CILIUM_FORWARD, CILIUM_POST_nat, …), and while it
# swaps its rules OLD_CILIUM_…; every rule it adds to a built-in chain jumps to one of them.
# Nobody else's chains or rules name them.
CHAIN_PATTERN = "CILIUM_"


class CiliumLeftovers(FactBase):
    """
    Returns what Cilium's agent left on the node: its devices, the iptables lines (per family
    and table) that name its ``CILIUM_*`` chains, its pinned eBPF objects (``BPFFS/cilium``,
    which holds the links of its TCX, tc and socket-LB programs, and its maps in
    ``BPFFS/tc/globals``), its state directories that are there, and whether an agent still runs.

    + bpffs_root: where the bpffs is mounted (the chart's ``bpf.root``)
    + state_dirs: the agent's state directories (``/var/run/cilium``)

    .. code:: python

        {
            "agent_running": False,
            "links": ["cilium_host", "cilium_net", "cilium_vxlan", "lxc95b1be7afe0e"],
            "iptables": {"filter": 15, "nat": 11, "mangle": 5, "raw": 9},
            "ip6tables": {},
            "pins": ["/sys/fs/bpf/cilium", "/sys/fs/bpf/tc/globals/cilium_lxc"],
            "dirs": ["/var/run/cilium"],
        }
    """

    @staticmethod
    def default():
        return {
            "agent_running": False,
            "links": [],
            "iptables": {},
            "ip6tables": {},
            "pins": [],
            "dirs": [],
        }

    def command(self, bpffs_root: str = "/sys/fs/bpf", state_dirs=("/var/run/cilium",)):
        return script_command(
            "facts",
            "cilium_leftovers.sh",
            bpffs_root.rstrip("/") or "/",
            CHAIN_PATTERN,
            *state_dirs,
        )

    def process(self, output):
        state = self.default()
        for line in output:
            kind, _, rest = line.partition(" ")
            words = rest.split()
            if kind == "agent":
                state["agent_running"] = True
            elif kind == "link" and len(words) == 1 and LINK_PATTERN.fullmatch(words[0]):
                state["links"].append(words[0])
            elif kind in ("iptables", "ip6tables") and len(words) == 2:
                state[kind][words[0]] = int(words[1])
            elif kind == "pin" and rest:
                state["pins"].append(rest)
            elif kind == "dir" and rest:
                state["dirs"].append(rest)
        state["links"].sort()
        return state

"""
The sim's network: one bridge on this machine, one network namespace per node, a veth between.

Only the bridge carries an address on the host side, and nodes get no default route: nothing a
node sends can leave this machine.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from pathlib import Path

from cilium_lab.sim import SimError
from cilium_lab.sim.config import SimConfig

NETNS_DIR = Path("/run/netns")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise SimError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def used_networks() -> list[tuple[str, ipaddress.IPv4Network]]:
    """(interface, IPv4 network) for every address of this machine's interfaces."""
    return [
        (
            link.get("ifname"),
            ipaddress.ip_network(f"{addr['local']}/{addr['prefixlen']}", strict=False),
        )
        for link in json.loads(ip("-j", "addr", "show").stdout or "[]")
        for addr in link.get("addr_info", [])
        if addr.get("family") == "inet"
    ]


def free_subnet(pool: str, prefix: int = 24, offset: int = 0) -> str:
    """The first subnet of ``pool`` that no interface of this machine is in, for a sim of its own.

    The search starts at the ``offset``-th subnet (wrapping round): sims that start together
    (two test sessions) look in different places, since neither has its bridge yet.
    """
    used = [net for _, net in used_networks()]
    subnets = list(ipaddress.ip_network(pool).subnets(new_prefix=prefix))
    start = offset % len(subnets)
    for candidate in subnets[start:] + subnets[:start]:
        if not any(candidate.overlaps(net) for net in used):
            return str(candidate)
    raise SimError(f"no free /{prefix} in {pool} on this machine")


def check_free(cfg: SimConfig) -> None:
    """Refuse, before any change, a bridge name or subnet that something else already uses."""
    if link_exists(cfg.bridge):
        raise SimError(
            f"interface {cfg.bridge} already exists; pick another bridge (--bridge or CILIUM_LAB_SIM_BRIDGE)"
        )
    for name, net in used_networks():
        if net.overlaps(cfg.network):
            raise SimError(
                f"subnet {cfg.subnet} overlaps {net} on {name}; pick another (--subnet or CILIUM_LAB_SIM_SUBNET)"
            )
    for name in cfg.nodes:
        if netns_exists(cfg.netns(name)) or link_exists(cfg.host_veth(name)):
            raise SimError(
                f"network namespace {cfg.netns(name)} or veth {cfg.host_veth(name)} already exists"
            )


def bridge_up(cfg: SimConfig) -> None:
    if not link_exists(cfg.bridge):
        ip("link", "add", cfg.bridge, "type", "bridge")
        ip("addr", "add", f"{cfg.bridge_address}/{cfg.network.prefixlen}", "dev", cfg.bridge)
    ip("link", "set", cfg.bridge, "up")
    if cfg.data_plane == "real":
        forwarding_up(cfg)


def bridge_down(cfg: SimConfig) -> None:
    if cfg.data_plane == "real":
        forwarding_down(cfg)
    if link_exists(cfg.bridge):
        ip("link", "del", cfg.bridge)


def node_net_up(cfg: SimConfig, name: str) -> str:
    """Create the node's namespace with its address on host0; return the namespace's path."""
    ns, veth = cfg.netns(name), cfg.host_veth(name)
    if not netns_exists(ns):
        ip("netns", "add", ns)
    if not link_exists(veth):
        # A fixed MAC per address: a node that comes back keeps the one this machine's neighbour
        # cache has for it, or SSH to it would stall until that entry times out.
        mac = "02:c1:" + ":".join(f"{octet:02x}" for octet in cfg.address(name).packed)
        ip(
            "link",
            "add",
            veth,
            "type",
            "veth",
            "peer",
            "name",
            "host0",
            "address",
            mac,
            "netns",
            ns,
        )
    ip("neigh", "flush", "to", str(cfg.address(name)), "dev", cfg.bridge, check=False)
    ip("link", "set", veth, "master", cfg.bridge, "up")
    ip("-n", ns, "link", "set", "lo", "up")
    address = f"{cfg.address(name)}/{cfg.network.prefixlen}"
    if address not in ip("-n", ns, "-o", "addr", "show", "dev", "host0").stdout:
        ip("-n", ns, "addr", "add", address, "dev", "host0")
    ip("-n", ns, "link", "set", "host0", "up")
    if cfg.data_plane == "real":
        # A real node has a default route, and the guide's goes via the workstation, which
        # routes each pod CIDR to its node; Cilium's agent finds its device by that route. This
        # machine forwards only back into the bridge (forwarding_up): nothing leaves the machine.
        ip("-n", ns, "route", "replace", "default", "via", str(cfg.bridge_address), "dev", "host0")
    return str(NETNS_DIR / ns)


# The real data plane routes pod traffic between nodes through this machine, as the guide's
# workstation does: the bridge forwards, and only back into itself.
FORWARD_GUARD = "cilium-lab sim: nothing from the bridge leaves it"


def _guard_rule(cfg: SimConfig) -> list[str]:
    return [
        "FORWARD",
        "-i",
        cfg.bridge,
        "!",
        "-o",
        cfg.bridge,
        "-m",
        "comment",
        "--comment",
        FORWARD_GUARD,
        "-j",
        "DROP",
    ]


def forwarding_up(cfg: SimConfig) -> None:
    """Let this machine forward between the sim's nodes (the bridge only), never off it."""
    rule = _guard_rule(cfg)
    if subprocess.run(["iptables", "-w", "-C", *rule], capture_output=True).returncode != 0:
        subprocess.run(["iptables", "-w", "-I", *rule], check=True, capture_output=True)
    Path(f"/proc/sys/net/ipv4/conf/{cfg.bridge}/forwarding").write_text("1\n")


def forwarding_down(cfg: SimConfig) -> None:
    rule = _guard_rule(cfg)
    while subprocess.run(["iptables", "-w", "-D", *rule], capture_output=True).returncode == 0:
        pass


def node_net_down(cfg: SimConfig, name: str) -> None:
    # Deleting the namespace takes the veth pair with it once the node's processes are gone;
    # the explicit delete covers a namespace something else still holds open.
    if netns_exists(cfg.netns(name)):
        ip("netns", "del", cfg.netns(name), check=False)
    if link_exists(cfg.host_veth(name)):
        ip("link", "del", cfg.host_veth(name), check=False)


# The workstation's routes to the pod CIDRs, as the guide's host has them (LAB.md).


def _route_via(cidr: str) -> str | None:
    """The gateway of this machine's route to exactly ``cidr`` ("dev" for one without), or None."""
    routes = json.loads(ip("-j", "-4", "route", "show", "exact", cidr).stdout or "[]")
    if not routes:
        return None
    return routes[0].get("gateway") or "dev"


def add_pod_routes(cfg: SimConfig, echo) -> list[list[str]]:
    """Route each node's pod CIDR via the node, where this machine has no route to it yet.

    Returns the routes added (``[cidr, via]``), the only ones ``remove_pod_routes`` takes away.
    """
    added = []
    local = used_networks()
    for name in cfg.nodes:
        cidr, via = cfg.pod_cidr(name), str(cfg.address(name))
        network = ipaddress.ip_network(cidr)
        clash = next((f"{net} on {dev}" for dev, net in local if net.overlaps(network)), None)
        if clash:
            echo(f"  not routing {cidr} via {name}: this machine has {clash}")
            continue
        found = _route_via(cidr)
        if found is not None:
            echo(
                f"  not routing {cidr} via {name}: this machine already routes it ({found}); left as it is"
            )
            continue
        ip("route", "add", cidr, "via", via, "dev", cfg.bridge)
        added.append([cidr, via])
    return added


def remove_pod_routes(cfg: SimConfig, routes: list[list[str]]) -> None:
    """Delete the routes the sim added that are still there as it added them."""
    for cidr, via in routes:
        if _route_via(cidr) == via:
            ip("route", "del", cidr, "via", via, check=False)

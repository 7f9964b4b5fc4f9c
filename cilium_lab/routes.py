"""
The workstation's routes to the pod CIDRs, as the inventory describes them.

The guide routes each node's pod CIDR via that node (LAB.md: ``10.N.0.0/16`` via
``192.168.1.(10+N)``). Each node's ``pod_cidr`` data gives the network and its ``pod_route_via``
(default: its ``ssh_hostname``) the gateway, so the routes live in the inventory, never in code.
"""

from __future__ import annotations

import ipaddress

from pyinfra.api.exceptions import DeployError


def checked_route(cidr: str, via: str) -> tuple[str, str]:
    """``(network, gateway)`` in canonical form, or a ValueError that says which value to fix."""
    try:
        network = str(ipaddress.IPv4Network(cidr))
    except ValueError as e:
        raise ValueError(f"pod_cidr {cidr!r} is not an IPv4 network ({e}): fix it in the inventory") from None
    try:
        gateway = str(ipaddress.IPv4Address(via))
    except ValueError:
        raise ValueError(
            f"the route to its pod CIDR would go via {via!r}, which is not an IPv4 address: set "
            "pod_route_via to the node's address in the inventory"
        ) from None
    return network, gateway


def pod_routes(inventory) -> dict[str, str]:
    """Pod CIDR -> node address, for every node of the inventory (active or not) with a pod CIDR.

    Bad data stops the run before its first change, naming the host and the value to fix.
    """
    routes: dict[str, str] = {}
    for node in inventory:
        if "local" in node.groups or not node.data.get("pod_cidr"):
            continue
        via = node.data.get("pod_route_via") or node.data.get("ssh_hostname") or node.name
        try:
            network, gateway = checked_route(node.data.get("pod_cidr"), via)
        except ValueError as e:
            raise DeployError(f"[{node.name}] {e}") from None
        if network in routes:
            raise DeployError(
                f"[{node.name}] pod_cidr {network} is also another node's: give each node its own"
            )
        routes[network] = gateway
    return routes

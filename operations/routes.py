"""
The workstation's routes to the pod CIDRs: needed while each node's bridge carried its own pod
network, gone once Cilium's overlay carries pod traffic, back on a rollback.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import StringCommand, operation

from facts.routes import HostRoutes
from operations.log_once import log_once


def _say_not_ours(network: str, found: str | None, gateway: str) -> None:
    log_once(
        f"the route to {network} goes via {found or 'an interface'}, not {gateway}: not the guide's, "
        "left as it is",
        warn=True,
    )


def _route_command(system: str, action: str, network: str, gateway: str) -> StringCommand:
    if system == "Darwin":
        return StringCommand("route", "-n", action, "-net", network, gateway)
    verb = {"add": "add", "delete": "del"}[action]
    return StringCommand("ip", "route", verb, network, "via", gateway)


@operation()
def pod_cidr_routes_absent(routes: dict[str, str]):
    """
    Remove the routes to the pod CIDRs that go via the nodes.

    + routes: pod CIDR to the node address its route goes via

    A route to a pod CIDR through another gateway is not the guide's: it stays, and the operation
    says so. Commands are the guide's own: ``ip route del`` on Linux, ``route -n delete -net`` on
    macOS. Changing routes needs root: call it with ``_sudo=True`` unless pyinfra runs as root.

    **Example:**

    .. code:: python

        pod_cidr_routes_absent(
            name="Delete the routes to the pod CIDRs",
            routes={"10.1.0.0/16": "192.168.1.11", "10.2.0.0/16": "192.168.1.12"},
            _sudo=True,
        )
    """

    wanted = routes
    # Reading the table needs no root: only the changes go through sudo.
    current = host.get_fact(HostRoutes, _sudo=False)
    changed = False

    for network, gateway in wanted.items():
        if network not in current["routes"]:
            continue
        if current["routes"][network] != gateway:
            _say_not_ours(network, current["routes"][network], gateway)
            continue
        changed = True
        yield _route_command(current["system"], "delete", network, gateway)

    if not changed:
        host.noop(f"no route to {', '.join(wanted) or 'any pod CIDR'} via the nodes")


@operation()
def pod_cidr_routes_present(routes: dict[str, str]):
    """
    Route each pod CIDR via its node, as the guide sets it up before Cilium.

    + routes: pod CIDR to the node address its route goes via

    A pod CIDR that already has a route through another gateway keeps it (the operation says
    so): replacing it could cut off whatever it serves. Commands are the guide's: ``ip route add``
    on Linux, ``route -n add -net`` on macOS; they need root (``_sudo=True``).

    **Example:**

    .. code:: python

        pod_cidr_routes_present(
            name="Route the pod CIDRs via the nodes",
            routes={"10.1.0.0/16": "192.168.1.11", "10.2.0.0/16": "192.168.1.12"},
            _sudo=True,
        )
    """

    wanted = routes
    current = host.get_fact(HostRoutes, _sudo=False)
    changed = False

    for network, gateway in wanted.items():
        if network in current["routes"]:
            if current["routes"][network] != gateway:
                _say_not_ours(network, current["routes"][network], gateway)
            continue
        changed = True
        yield _route_command(current["system"], "add", network, gateway)

    if not changed:
        host.noop(f"every pod CIDR is routed ({', '.join(wanted) or 'none given'})")

"""
The deploys' data, read from the inventory and its group data in one place.

Every value lives in group data (``inventories/group_data/``) or the inventory; nothing here
has a default of its own. A key no layer holds stops the run before its first change with one
line naming the key and where pyinfra looked for it.
"""

from __future__ import annotations

from pyinfra.api.exceptions import DeployError

from operations.routes import checked_route

_MISSING = object()


def value(host, key: str):
    """``host.data.<key>``, or one line saying where the key should be."""
    found = host.data.get(key, _MISSING)
    if found is _MISSING:
        raise DeployError(
            f"[{host.name}] no data {key!r}: pyinfra reads group data from group_data/ beside the "
            "inventory file; keep the inventory in inventories/, or point at the project's with "
            "--group-data inventories/group_data"
        )
    return found


def cluster(host) -> dict:
    """Where the cluster is and where Cilium lives in it: ``namespace``, ``kubeconfig``, ``context``."""
    return dict(
        namespace=value(host, "cilium_namespace"),
        kubeconfig=value(host, "kubeconfig"),
        context=value(host, "kube_context"),
    )


def chart(host) -> dict:
    """Which chart, at which version, from which repository: ``chart``, ``version``,
    ``repo_name``, ``repo_url``."""
    return dict(
        chart=value(host, "cilium_chart"),
        version=value(host, "cilium_chart_version"),
        repo_name=value(host, "helm_repo_name"),
        repo_url=value(host, "helm_repo_url"),
    )


def release(host) -> dict:
    """The release with its chart, values and cluster: what ``cilium_release`` and the
    preflight's cluster read take."""
    return dict(
        release=value(host, "cilium_release"),
        values=value(host, "cilium_values"),
        **chart(host),
        **cluster(host),
    )


def pod_route(node) -> tuple[str, str]:
    """The node's route: its ``pod_cidr`` via its ``pod_route_via`` (else its ``ssh_hostname``),
    in canonical form, or a ValueError that says which value to fix."""
    via = node.data.get("pod_route_via") or node.data.get("ssh_hostname") or node.name
    return checked_route(node.data.get("pod_cidr"), via)


def pod_routes(inventory) -> dict[str, str]:
    """Pod CIDR -> node address, for every node of the inventory (active or not) with a pod CIDR.

    The guide routes each node's pod CIDR via that node (LAB.md: ``10.N.0.0/16`` via
    ``192.168.1.(10+N)``): each node's ``pod_cidr`` gives the network and its ``pod_route_via``
    (else its ``ssh_hostname``) the gateway. Bad data stops the run before its first change,
    naming the host and the value to fix.
    """
    routes: dict[str, str] = {}
    for node in inventory:
        if "local" in node.groups or not node.data.get("pod_cidr"):
            continue
        try:
            network, gateway = pod_route(node)
        except ValueError as e:
            raise DeployError(f"[{node.name}] {e}") from None
        if network in routes:
            raise DeployError(
                f"[{node.name}] pod_cidr {network} is also another node's: give each node its own"
            )
        routes[network] = gateway
    return routes

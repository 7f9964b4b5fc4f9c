"""
The deploys' data, read from the inventory and its group data in one place, and checked where it
is read: the operations take it as it comes from here.

Every value lives in group data (``inventories/group_data/``) or the inventory; nothing here
has a default of its own. A key no layer holds, or a value that cannot work, stops the run
before its first change with one line naming the host, the key and what to do.
"""

from __future__ import annotations

import ipaddress

from pyinfra.api.exceptions import DeployError

from cilium_lab.cluster.helm_args import hidden
from deploys.support.node_verdict import NODE_CHECKS, is_loopback
from facts.directories import directory_problems

# The node's directories: kubelet's CNI directory, then where the migration keeps what it moves.
DIR_KEYS = ("cni_conf_dir", "cni_backup_dir", "modules_backup_dir", "units_record_dir")

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


def seconds(host, key: str) -> float:
    """``host.data.<key>`` as a number of seconds above zero, or one line saying what to set."""
    found = value(host, key)
    try:
        number = float(found)
    except (TypeError, ValueError):
        number = None
    if isinstance(found, bool) or number is None or not 0 < number < float("inf"):
        raise DeployError(
            f"[{host.name}] {key} {found!r} is not a number of seconds above zero: set it to one "
            "in the group data or with --data"
        )
    return number


def cluster(host) -> dict:
    """Where the cluster is and where Cilium lives in it: ``namespace``, ``kubeconfig``, ``context``."""
    return dict(
        namespace=value(host, "cilium_namespace"),
        kubeconfig=value(host, "kubeconfig"),
        context=value(host, "kube_context"),
    )


def kube_proxy_unit(host) -> dict:
    """kube-proxy's unit and where its state from before is recorded: ``unit``, ``record_dir``."""
    return dict(unit=value(host, "kube_proxy_unit"), record_dir=value(host, "units_record_dir"))


def cni_dirs(host) -> dict:
    """kubelet's CNI directory and where the old configurations go: ``conf_dir``, ``backup_dir``."""
    return dict(conf_dir=value(host, "cni_conf_dir"), backup_dir=value(host, "cni_backup_dir"))


def chart(host) -> dict:
    """Which chart, at which version, from which repository: ``chart``, ``version``,
    ``repo_name``, ``repo_url``."""
    return dict(
        chart=value(host, "cilium_chart"),
        version=value(host, "cilium_chart_version"),
        repo_name=value(host, "helm_repo_name"),
        repo_url=value(host, "helm_repo_url"),
    )


def _merged(base: dict, overrides: dict) -> dict:
    merged = dict(base)
    for key, extra in overrides.items():
        if isinstance(extra, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], extra)
        else:
            merged[key] = extra
    return merged


def cilium_values(host):
    """The chart's values: ``cilium_values``, with a lab's ``cilium_values_overrides`` merged in
    key by key. pyinfra replaces a data key as a whole, so a lab that set ``cilium_values`` of its
    own would carry a second copy of the chapter's values; its overrides carry only its own keys."""
    values = value(host, "cilium_values")
    overrides = value(host, "cilium_values_overrides")
    if not isinstance(overrides, dict):
        raise DeployError(
            f"[{host.name}] cilium_values_overrides is a {type(overrides).__name__}, not a mapping "
            "of chart values: give it as a dict in group data ({} for none)"
        )
    return _merged(values, overrides) if isinstance(values, dict) and overrides else values


def release(host) -> dict:
    """The release with its chart, values, cluster, install flags and takeover override: what
    ``cilium_release`` and the preflight's cluster read take. The values print as their count
    of keys (pyinfra prints a failed fact's arguments)."""
    return dict(
        release=value(host, "cilium_release"),
        values=hidden(cilium_values(host)),
        **chart(host),
        **cluster(host),
        extra_args=value(host, "helm_extra_args"),
        takeover=bool(value(host, "cilium_release_takeover")),
    )


def checked_route(cidr: str, via: str) -> tuple[str, str]:
    """``(network, gateway)`` in canonical form, or a ValueError that says which value to fix."""
    try:
        network = str(ipaddress.IPv4Network(cidr))
    except ValueError as e:
        raise ValueError(
            f"pod_cidr {cidr!r} is not an IPv4 network ({e}): fix it in the inventory"
        ) from None
    try:
        gateway = str(ipaddress.IPv4Address(via))
    except ValueError:
        raise ValueError(
            f"the route to its pod CIDR would go via {via!r}, which is not an IPv4 address: set "
            "pod_route_via to the node's address in the inventory"
        ) from None
    return network, gateway


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


def pod_cidrs(inventory) -> dict[str, str]:
    """Node name -> its pod CIDR (canonical), for every node of the inventory with one: the
    range the old bridge's host-local IPAM hands out there (LAB.md), which tells an address of
    the old CNI from one of Cilium's. Bad data stops the run as :func:`pod_routes` does."""
    cidrs: dict[str, str] = {}
    for node in inventory:
        if "local" in node.groups or not node.data.get("pod_cidr"):
            continue
        try:
            cidrs[node.name] = pod_route(node)[0]
        except ValueError as e:
            raise DeployError(f"[{node.name}] {e}") from None
    return cidrs


def values_problems(values) -> list[str]:
    """What is wrong with ``cilium_values`` for the migration, each with what to do."""
    if not isinstance(values, dict):
        return [
            f"cilium_values is a {type(values).__name__}, not a mapping of the chart's values: "
            "give it as a dict in group data"
        ]
    problems = []
    # The chart takes true or "true" (it compares the value as a string).
    if values.get("kubeProxyReplacement") not in (True, "true"):
        problems.append(
            f"cilium_values kubeProxyReplacement is {values.get('kubeProxyReplacement')!r}, but "
            "the migration removes kube-proxy from every node: set it to True"
        )
    service_host, port = values.get("k8sServiceHost"), values.get("k8sServicePort")
    if not service_host or not isinstance(service_host, str):
        problems.append(
            "cilium_values has no k8sServiceHost: set it to the name or address every node "
            "reaches the API server by (the guide's: kubernetes)"
        )
    elif service_host == "auto":
        # Cilium reads the address from kube-public/cluster-info: the workstation checks it is there.
        return problems
    elif is_loopback(service_host):
        problems.append(
            f"cilium_values k8sServiceHost {service_host!r} is a loopback address: each "
            "agent would talk to itself; use the name or address the nodes reach the API "
            "server by (the guide's: kubernetes)"
        )
    if isinstance(port, bool) or not str(port).isdigit() or not 0 < int(port) < 65536:
        problems.append(
            f"cilium_values k8sServicePort {port!r} is not a port number: set it to the API "
            "server's port (the guide's: 6443)"
        )
    return problems


def skipped_checks(host_data) -> set[str]:
    """The node checks ``preflight_skip`` names (a list, or a comma-separated string from the
    command line); an unknown name stops the run."""
    skip = host_data.get("preflight_skip") or ()
    if isinstance(skip, str):
        skip = skip.split(",")
    names = {name.strip() for name in skip if name.strip()}
    unknown = names - set(NODE_CHECKS)
    if unknown:
        raise DeployError(
            f"preflight_skip names unknown checks {sorted(unknown)}: use some of {', '.join(NODE_CHECKS)}"
        )
    return names


def node_data_problems(host) -> list[str]:
    """The node's own data: values, pod CIDR, directories, skipped checks."""
    problems = values_problems(cilium_values(host))
    if host.data.get("pod_cidr"):
        try:
            pod_route(host)
        except ValueError as error:
            problems.append(str(error))
    problems += directory_problems({key: value(host, key) for key in DIR_KEYS})
    skipped_checks(host.data)
    return problems

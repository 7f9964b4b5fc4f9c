"""
kube-proxy's leftovers: its KUBE-* iptables chains and IPVS state, gone once it is stopped; the
kubelet's own KUBE-* chains stay.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import StringCommand, operation

from facts.kube_proxy_rules import IPVS_INTERFACE, PROXY_LINE_AWK, KubeProxyRules
from operations.node_read import NodeRead, node_fact, reads_node


@operation()
@reads_node
def kube_proxy_rules_absent(node_read: NodeRead | None = None):
    """
    Remove every rule and chain kube-proxy left in iptables and ip6tables (``KUBE-*``), and
    its IPVS services and ``kube-ipvs0`` interface when it ran in IPVS mode. The kubelet's own
    ``KUBE-IPTABLES-HINT``, ``KUBE-FIREWALL`` and ``KUBE-KUBELET-CANARY`` stay, with their
    jumps from ``INPUT`` and ``OUTPUT``.

    Each table that holds kube-proxy's lines is saved, stripped of them and restored in one
    ``iptables-restore``, which swaps the table atomically: other rules stay as they were.
    Run it after kube-proxy is stopped, or kube-proxy puts them back.
    + node_read: the run's read of the node, used while it holds; None to read the fact

    **Example:**

    .. code:: python

        kube_proxy_rules_absent(name="Remove kube-proxy's iptables leftovers")
    """

    rules = node_fact(node_read, KubeProxyRules)
    changed = False

    for family in ("iptables", "ip6tables"):
        for table in sorted(rules[family]):
            changed = True
            # One table at a time, so that a table without leftovers is never rewritten.
            yield StringCommand(
                f'rules="$({family}-save -t {table})" &&',
                f"printf '%s\\n' \"$rules\" | awk '{PROXY_LINE_AWK}!proxy($0)' | {family}-restore",
            )

    if rules["ipvs_services"]:
        changed = True
        yield StringCommand("ipvsadm", "--clear")

    if rules["ipvs_interface"]:
        changed = True
        yield StringCommand("ip", "link", "delete", IPVS_INTERFACE)

    if not changed:
        host.noop("no kube-proxy rules left")

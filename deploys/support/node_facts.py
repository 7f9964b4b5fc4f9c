"""
What the migration's node operations read, with the arguments the deploy gives them: read in
one command once the node's lock is held (:class:`operations.node_read.NodeRead`).

An operation that reads a fact not listed here, or with other arguments, still works: it reads
that fact alone, one more round trip (tests/test_node_read.py checks that none does).
"""

from __future__ import annotations

from deploys.support import data
from facts.br_netfilter import BrNetfilter
from facts.cni import CniState
from facts.kube_proxy_rules import KubeProxyRules
from facts.systemd_unit import UnitState


def migration(host) -> list[tuple[type, dict]]:
    """The facts of ``deploys/cilium.py``'s node operations, in the order they run."""
    return [
        (UnitState, data.kube_proxy_unit(host)),
        (KubeProxyRules, {}),
        (CniState, data.cni_dirs(host)),
        (BrNetfilter, {}),
    ]

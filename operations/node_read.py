"""
What one run knows of one node: its facts read in one command once the run holds the node's
lock, kept for the node operations until one of them changes the node.

A no-change re-run then asks each node one question after the preflight, not one a step. Each
node operation given the run's :class:`NodeRead` takes its fact from the answer while that
holds, and says when it yields a command (:func:`reads_node`): from then on every operation
of that node reads its own facts afresh. So does every node operation once the cluster phase
changed the cluster (Cilium's agents write to the nodes).

The deploy gets one per node from its run (``deploys/support/run.py``), after the preflight,
and passes it to each node operation as ``node_read=``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from pyinfra import host

from facts.node_state import NodeState, fact_key


class NodeRead:
    """The run's knowledge of one node.

    + facts: the facts to read, ``[(FactClass, {argument: value}), ...]``; an operation that
      asks for another fact, or the same with other arguments, reads it alone
    + stale: says whether something outside this node's operations changed it
    """

    def __init__(self, facts: list[tuple[type, dict]], stale: Callable[[], bool] = lambda: False):
        self.facts = facts
        self._stale = stale
        self._answer: dict = {}

    def read(self, host) -> None:
        """Read every fact on ``host`` in one command, and keep the answers."""
        self._answer = host.get_fact(NodeState, facts=self.facts) or {}

    def known(self, cls: type, **kwargs):
        """The kept answer of fact ``cls`` with these arguments, while nothing changed the
        node; else None."""
        if self._stale():
            return None
        return self._answer.get(fact_key(cls, kwargs))

    def changed(self) -> None:
        """An operation changes the node: the kept answers are stale from here on."""
        self._answer = {}


def node_fact(node_read: NodeRead | None, cls: type, **kwargs):
    """The fact from the run's read of the node while it holds, else read now."""
    known = node_read.known(cls, **kwargs) if node_read is not None else None
    return known if known is not None else host.get_fact(cls, **kwargs)


def reads_node(func):
    """For a node operation's generator (under ``@operation``): it takes ``node_read=``, and
    the read is stale from its first command on."""

    @functools.wraps(func)
    def commands(*args, node_read: NodeRead | None = None, **kwargs):
        for command in func(*args, node_read=node_read, **kwargs):
            if node_read is not None:
                node_read.changed()
            yield command

    return commands

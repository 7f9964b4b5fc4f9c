"""
Where the chapter moves from one part to the next, on every host at once.

pyinfra runs each host's operations in the order the deploy calls them, but orders operations of
different hosts only through the operations they share: the workstation's ``helm install`` would
otherwise run beside the nodes' third step, before their old CNI configurations are gone. An
operation that every host runs is a point none passes before all reached it.
"""

from __future__ import annotations

from pyinfra import host, state
from pyinfra.api import operation


def workstation_ok() -> bool:
    """Whether the workstation's part (the ``local`` group) has not failed in this run: for
    ``_if=``, so that what must wait for it stays undone, for a re-run, when it did."""
    return not any("local" in failed.groups for failed in state.failed_hosts)


@operation(is_idempotent=True)
def phase_reached(phase: str):
    """
    Change nothing; mark, on every host that calls it, the end of a part of the chapter, so that
    no host starts the next part before every host finished this one.

    + phase: what holds from here on, for the output

    **Example:**

    .. code:: python

        phase_reached(
            name="Every node is off kube-proxy and the old CNI",
            phase="the nodes are ready for Cilium",
        )
    """

    host.noop(phase)
    return
    yield

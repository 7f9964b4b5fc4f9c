"""
A systemd unit stopped and disabled, or enabled and started: kube-proxy's, which Cilium replaces.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation

from facts.systemd_unit import UnitState


@operation()
def unit_stopped_and_disabled(unit: str):
    """
    Stop a unit and keep it from starting at boot.

    + unit: the unit's full name

    A node without the unit has nothing to do; a masked unit already counts as disabled, and a
    static one cannot be disabled (it has no install section), so both are only stopped.

    **Example:**

    .. code:: python

        unit_stopped_and_disabled(
            name="Stop and disable kube-proxy",
            unit="kube-proxy.service",
        )
    """

    state = host.get_fact(UnitState, unit=unit)

    if not state["exists"]:
        host.noop(f"{unit} is not installed")
        return

    if state["running"]:
        yield StringCommand("systemctl", "stop", QuoteString(unit))

    if state["enabled"]:
        yield StringCommand("systemctl", "disable", QuoteString(unit))
    elif not state["running"]:
        host.noop(f"{unit} is stopped and {state['unit_file_state'] or 'disabled'}")


@operation()
def unit_enabled_and_started(unit: str):
    """
    Start a unit and have it start at boot again (for kube-proxy: the way back from Cilium's
    kube-proxy replacement).

    + unit: the unit's full name

    A masked unit is unmasked first (nothing else could start it); a static one is only
    started. A node without the unit has nothing to start, and the operation says so.

    **Example:**

    .. code:: python

        unit_enabled_and_started(
            name="Enable and start kube-proxy",
            unit="kube-proxy.service",
        )
    """

    state = host.get_fact(UnitState, unit=unit)

    if not state["exists"]:
        host.noop(f"{unit} is not installed: nothing to start")
        return

    masked = state["load_state"] == "masked" or state["unit_file_state"].startswith("masked")
    if masked:
        yield StringCommand("systemctl", "unmask", QuoteString(unit))

    if masked or state["unit_file_state"] == "disabled":
        yield StringCommand("systemctl", "enable", QuoteString(unit))

    if not state["running"]:
        yield StringCommand("systemctl", "start", QuoteString(unit))
    elif not masked and state["unit_file_state"] != "disabled":
        host.noop(f"{unit} is running and {state['unit_file_state'] or 'enabled'}")

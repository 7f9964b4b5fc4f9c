"""
The state of one systemd unit, as the migration needs it.
"""

from __future__ import annotations

from pyinfra.api import FactBase, QuoteString, StringCommand

# systemctl reports these UnitFileState values for units that start at boot.
ENABLED_STATES = frozenset(
    ("enabled", "enabled-runtime", "linked", "linked-runtime", "alias", "indirect")
)
# ActiveState values for which stopping the unit does something.
RUNNING_STATES = frozenset(("active", "activating", "reloading", "deactivating"))


class UnitState(FactBase):
    """
    Returns whether a systemd unit exists, runs, and starts at boot.

    + unit: the unit's full name

    ``load_state`` is ``not-found`` for a unit that is not installed, and ``masked`` for a
    masked one; ``unit_file_state`` is systemctl's (``enabled``, ``disabled``, ``static``,
    ``masked``, …, empty when unknown).

    .. code:: python

        {
            "exists": True,
            "load_state": "loaded",
            "active_state": "active",
            "unit_file_state": "enabled",
            "running": True,
            "enabled": True,
        }
    """

    @staticmethod
    def default():
        # What a missing unit looks like: nothing to stop, nothing to disable.
        return {
            "exists": False,
            "load_state": "not-found",
            "active_state": "inactive",
            "unit_file_state": "",
            "running": False,
            "enabled": False,
        }

    def requires_command(self, *args, **kwargs) -> str:
        return "systemctl"

    def command(self, unit: str):
        return StringCommand(
            "systemctl",
            "show",
            "--property=LoadState,ActiveState,UnitFileState",
            "--",
            QuoteString(unit),
        )

    def process(self, output):
        values = {}
        for line in output:
            key, sep, value = line.strip().partition("=")
            if sep:
                values[key] = value

        state = self.default()
        state["load_state"] = values.get("LoadState", "not-found")
        state["active_state"] = values.get("ActiveState", "inactive")
        state["unit_file_state"] = values.get("UnitFileState", "")
        state["exists"] = state["load_state"] != "not-found"
        state["running"] = state["active_state"] in RUNNING_STATES
        state["enabled"] = state["unit_file_state"] in ENABLED_STATES
        return state

"""
The state of one systemd unit, as the migration needs it, and as it was before the migration.
"""

from __future__ import annotations

import json

from pyinfra.api import FactBase, FactProcessError, QuoteString, StringCommand

from facts.records import RETIRED_INFIX
from facts.shell import script_command

# systemctl reports these UnitFileState values for units that start at boot.
ENABLED_STATES = frozenset(
    ("enabled", "enabled-runtime", "linked", "linked-runtime", "alias", "indirect")
)
# ActiveState values for which stopping the unit does something.
RUNNING_STATES = frozenset(("active", "activating", "reloading", "deactivating"))


class UnitState(FactBase):
    """
    Returns whether a systemd unit exists, runs, and starts at boot; with ``record_dir``, also
    the state it had before the migration changed it, as the migration recorded it in
    ``<record_dir>/<unit>.json``, and the names of the records earlier rollbacks restored. One
    command reads both, so a re-run pays one round trip for the unit.

    + unit: the unit's full name
    + record_dir: the directory the records are kept in (optional)

    ``load_state`` is ``not-found`` for a unit that is not installed, and ``masked`` for a
    masked one; ``unit_file_state`` is systemctl's (``enabled``, ``disabled``, ``static``,
    ``masked``, …, empty when unknown). With ``record_dir``, ``record`` is ``None`` when there
    is no record, else the recorded state in this fact's shape (without ``record`` and
    ``retired``); ``retired`` lists the restored records, oldest first.

    .. code:: python

        {
            "exists": True,
            "load_state": "loaded",
            "active_state": "inactive",
            "unit_file_state": "disabled",
            "running": False,
            "enabled": False,
            # with record_dir only:
            "record": {
                "exists": True,
                "load_state": "loaded",
                "active_state": "active",
                "unit_file_state": "enabled",
                "running": True,
                "enabled": True,
            },
            "retired": ["kube-proxy.service.json.~restored-20250101T120000Z~"],
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

    def requires_command(self, unit: str, record_dir: str | None = None):
        # With records to read the command checks for systemctl itself: a node without it still
        # has its records read, as a missing unit's.
        return "systemctl" if record_dir is None else None

    def command(self, unit: str, record_dir: str | None = None):
        show = StringCommand(
            "systemctl",
            "show",
            "--property=LoadState,ActiveState,UnitFileState",
            "--",
            QuoteString(unit),
        )
        if record_dir is None:
            return show

        # "records" ends systemctl's lines and says the records were read; the record comes
        # last: every line after "record" is its JSON, whatever its layout.
        return script_command(
            "facts", "unit_state.sh", unit, record_path(record_dir, unit), RETIRED_INFIX
        )

    def process(self, output):
        values = {}
        found = None
        lines = list(output)
        for index, line in enumerate(lines):
            if found is None:
                key, sep, value = line.strip().partition("=")
                if sep:
                    values[key] = value
                elif line.strip() == "records":
                    found = {"record": None, "retired": []}
            elif line.startswith("retired "):
                found["retired"].append(line[len("retired ") :])
            elif line.strip() == "record":
                found["record"] = _recorded_state("\n".join(lines[index + 1 :]))
                break

        state = unit_state(
            load_state=values.get("LoadState", "not-found"),
            active_state=values.get("ActiveState", "inactive"),
            unit_file_state=values.get("UnitFileState", ""),
        )
        if found is not None:
            found["retired"].sort()
            state.update(found)
        return state


def unit_state(load_state: str, active_state: str, unit_file_state: str) -> dict:
    """A :class:`UnitState` value from systemctl's three properties."""
    return {
        "exists": load_state != "not-found",
        "load_state": load_state,
        "active_state": active_state,
        "unit_file_state": unit_file_state,
        "running": active_state in RUNNING_STATES,
        "enabled": unit_file_state in ENABLED_STATES,
    }


def record_path(record_dir: str, unit: str) -> str:
    """Where the migration records ``unit``'s state: one file a unit, named after it."""
    if not unit or "/" in unit:
        raise ValueError(f"{unit!r} is not a unit name")
    return f"{record_dir.rstrip('/') or '/'}/{unit}.json"


# What a record keeps of a UnitState: systemctl's own words; the rest is derived from them.
RECORDED = ("load_state", "unit_file_state", "active_state")


def _recorded_state(text: str) -> dict:
    try:
        recorded = json.loads(text)
        values = {key: recorded[key] for key in RECORDED}
    except (ValueError, TypeError, KeyError) as e:
        # Guessing would give the unit a state the operator never chose: stop instead.
        raise FactProcessError(
            f"not a record the migration wrote ({e!r}): {text[:200]!r}"
        ) from None
    if not all(isinstance(value, str) for value in values.values()):
        raise FactProcessError(f"not a record the migration wrote: {text[:200]!r}")
    return unit_state(**values)

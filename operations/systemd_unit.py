"""
A systemd unit stopped and disabled, its state from before recorded; and given that state back:
kube-proxy's, which Cilium replaces.
"""

from __future__ import annotations

import json
import shlex

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation
from pyinfra.api.exceptions import OperationValueError

from facts.systemd_unit import RECORDED, UnitState, record_path
from operations.log_once import log_once
from operations.node_read import NodeRead, node_fact, reads_node
from operations.records import retired, text_written_once


@operation()
@reads_node
def unit_stopped_and_disabled(unit: str, record_dir: str, node_read: NodeRead | None = None):
    """
    Record a unit's state, then stop it and keep it from starting at boot.

    + unit: the unit's full name
    + record_dir: where the unit's state from before the first change is recorded, for
      :func:`unit_restored`
    + node_read: the run's read of the node, used while it holds; None to read the fact

    The record (``<record_dir>/<unit>.json``: systemctl's ``LoadState``, ``UnitFileState`` and
    ``ActiveState``) is written once, before the first change, also when the unit needs none
    (disabled or masked by hand, or not installed): the way back must know. A record already
    there is never overwritten, so a re-run does not take the migrated state for the original.

    A node without the unit has nothing to stop; a masked unit already counts as disabled, and
    a static one cannot be disabled (it has no install section), so both are only stopped.

    **Example:**

    .. code:: python

        unit_stopped_and_disabled(
            name="Stop and disable kube-proxy",
            unit="kube-proxy.service",
            record_dir="/var/backups/cilium-lab/units",
        )
    """

    state = node_fact(node_read, UnitState, unit=unit, record_dir=record_dir)
    # By get: a fact that could not be read (errors ignored) is the default, without records.
    was = state.get("record")

    if was is None:
        yield _write_record(unit, record_dir, state)

    if not state["exists"]:
        if was is not None:
            host.noop(f"{unit} is not installed")
        return

    if state["running"]:
        yield StringCommand("systemctl", "stop", QuoteString(unit))

    if state["enabled"]:
        yield StringCommand("systemctl", "disable", QuoteString(unit))
    elif not state["running"] and was is not None:
        host.noop(f"{unit} is stopped and {state['unit_file_state'] or 'disabled'}")


@operation()
def unit_restored(unit: str, record_dir: str):
    """
    Give a unit back the state :func:`unit_stopped_and_disabled` recorded before the migration:
    the way back from Cilium's kube-proxy replacement, as the operator had kube-proxy.

    + unit: the unit's full name
    + record_dir: where :func:`unit_stopped_and_disabled` recorded it

    An enabled unit is enabled again, a running one started; a disabled or masked one stays so
    (masked again if something unmasked it), a static one is only started if it ran, and one
    that was not installed is left alone. When the unit ends up stopped, the run says how to
    start it by hand. The record is then renamed aside (``<unit>.json.~restored-<time>~``): the
    next migration records afresh, and a second rollback changes nothing.

    A node with no record, live or retired, was never migrated: the operation refuses, naming
    the record (``deploys/rollback.py``'s preflight refuses before any change).

    **Example:**

    .. code:: python

        unit_restored(
            name="Give kube-proxy back its state from before the migration",
            unit="kube-proxy.service",
            record_dir="/var/backups/cilium-lab/units",
        )
    """

    state = host.get_fact(UnitState, unit=unit, record_dir=record_dir)
    was = state.get("record")
    given_back = state.get("retired", [])

    if was is None:
        if given_back:
            # Already given back: what the operator did with the unit since is theirs.
            host.noop(f"{unit} has its state from before the migration back ({given_back[-1]})")
            return
        raise OperationValueError(no_record(unit, record_dir))

    if was["exists"] and not state["exists"]:
        # The record stays: a rollback after the unit is installed again can still use it.
        host.noop(
            f"{unit} was {_describe(was)} before the migration, and is not installed now: nothing to restore"
        )
        return

    if was["exists"]:
        yield from _state_restored(unit, was, state)
    else:
        log_once(f"{unit} was not installed before the migration: nothing to restore")

    # Renamed aside, not removed: a second rollback must tell "given back already" (nothing to
    # do) from "never migrated" (refused).
    yield retired(record_path(record_dir, unit))


def no_record(unit: str, record_dir: str) -> str:
    """Why a node without ``unit``'s record cannot be rolled back, in one line."""
    return (
        f"no record of {unit}'s state from before the migration: {record_path(record_dir, unit)} "
        "is missing, and no retired one beside it; this node was not migrated by cilium-lab, so "
        "there is nothing to roll back: leave it out with --exclude, or restore it by hand"
    )


def _write_record(unit: str, record_dir: str, state: dict) -> str:
    text = json.dumps(
        {
            "unit": unit,
            **{key: state[key] for key in RECORDED},
        },
        sort_keys=True,
    )
    return text_written_once(record_path(record_dir, unit), text)


def _masked(state: dict) -> bool:
    return state["load_state"] == "masked" or state["unit_file_state"].startswith("masked")


def _describe(state: dict) -> str:
    if not state["exists"]:
        return "not installed"
    running = "running" if state["running"] else "stopped"
    return f"{state['unit_file_state'] or state['load_state']} and {running}"


def _state_restored(unit: str, was: dict, now: dict):
    runtime = ["--runtime"] if was["unit_file_state"].endswith("-runtime") else []
    name = QuoteString(unit)

    if _masked(now) and not _masked(was):
        now_runtime = ["--runtime"] if now["unit_file_state"] == "masked-runtime" else []
        yield StringCommand("systemctl", "unmask", *now_runtime, name)
    elif _masked(was) and not _masked(now):
        yield StringCommand("systemctl", "mask", *runtime, name)

    if was["enabled"] and not now["enabled"]:
        yield StringCommand("systemctl", "enable", *runtime, name)
    elif was["unit_file_state"] == "disabled" and now["enabled"]:
        yield StringCommand("systemctl", "disable", name)

    running = now["running"]
    if was["running"] and not running and not _masked(was):
        yield StringCommand("systemctl", "start", name)
        running = True
    elif not was["running"] and running:
        # Started by someone since the migration stopped it; the operator had it stopped.
        yield StringCommand("systemctl", "stop", name)
        running = False

    if not running:
        quoted = shlex.quote(unit)
        by_hand = f"systemctl start {quoted}"
        if _masked(was):
            by_hand = f"systemctl unmask {' '.join(runtime + [quoted])} && {by_hand}"
        # Masked while it ran: the mask is given back, which leaves no way to start it.
        why = " (a masked unit cannot be started)" if was["running"] else ""
        log_once(
            f"{unit} was {_describe(was)} before the migration: left stopped{why}; to start it by "
            f"hand: {by_hand}",
            warn=True,
        )

"""
The rollback's own preflight check: a node it is to give back must have been migrated.

Every migration records kube-proxy's unit first, before its first change on a node (see
:func:`operations.systemd_unit.unit_stopped_and_disabled`); a rollback retires that record. A
node with neither has nothing to be given back from, and the rollback refuses it before any
change on any node, rather than guess at what the operator had.
"""

from __future__ import annotations

from deploys.support import data
from facts.systemd_unit import UnitState
from operations.systemd_unit import no_record


def missing_record(host) -> list[str]:
    """One line when ``host`` has no record of the migration, live or retired; else none."""
    unit, record_dir = data.value(host, "kube_proxy_unit"), data.value(host, "units_record_dir")
    state = host.get_fact(UnitState, unit=unit, record_dir=record_dir)
    if state.get("record") is None and not state.get("retired"):
        return [no_record(unit, record_dir)]
    return []

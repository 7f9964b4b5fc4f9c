"""A rollback refuses a node without the migration's record, before any change and in one line."""

import pytest
from pyinfra.api.exceptions import OperationValueError
from pyinfra_fixtures import run_operation

from deploys.support.rollback_records import missing_record
from facts.systemd_unit import UnitState
from operations.systemd_unit import unit_restored

UNIT, RECORD_DIR = "kube-proxy.service", "/var/backups/cilium-lab/units"
RUNNING = UnitState().default() | {
    "exists": True,
    "load_state": "loaded",
    "active_state": "active",
    "unit_file_state": "enabled",
    "running": True,
    "enabled": True,
}


class Node:
    name = "worker1"
    data = {"kube_proxy_unit": UNIT, "units_record_dir": RECORD_DIR}

    def __init__(self, state):
        self.state, self.asked = state, []

    def get_fact(self, cls, **kwargs):
        self.asked.append((cls, kwargs))
        return self.state


def test_a_node_without_any_record_is_refused_naming_the_record():
    node = Node({**RUNNING, "record": None, "retired": []})
    (line,) = missing_record(node)
    assert f"{RECORD_DIR}/{UNIT}.json is missing" in line and "\n" not in line
    # The fact the rollback's own step reads: same arguments.
    assert node.asked == [(UnitState, {"unit": UNIT, "record_dir": RECORD_DIR})]


@pytest.mark.parametrize(
    "found",
    [
        {"record": RUNNING, "retired": []},
        {"record": None, "retired": [f"{UNIT}.json.~restored-20261201T000000Z~"]},
    ],
    ids=["recorded", "rolled_back_already"],
)
def test_a_migrated_or_rolled_back_node_passes(found):
    assert missing_record(Node({**RUNNING, **found})) == []


def test_unit_restored_refuses_without_a_record():
    with pytest.raises(OperationValueError, match=f"{RECORD_DIR}/{UNIT}.json is missing"):
        run_operation(
            unit_restored,
            {UnitState: {**RUNNING, "record": None, "retired": []}},
            unit=UNIT,
            record_dir=RECORD_DIR,
        )

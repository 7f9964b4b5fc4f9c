"""
kube-proxy's unit after a migration and a rollback, on nodes where the operator had set it by
hand: disabled, masked, not installed, or as the guide left it (enabled, running). The rollback
gives each node back exactly what it had, says how to start what stays stopped, and a second
rollback changes nothing. The nodes are then put back as the guide has them, for the tests
after these.
"""

from __future__ import annotations

import json

import pytest
from e2e_sim import ROLLBACK, comparable

pytestmark = pytest.mark.e2e

UNIT = "kube-proxy.service"
RECORDS = "/var/backups/cilium-lab/units"
OP_MIGRATE = "Stop and disable kube-proxy"
OP_RESTORE = "Give kube-proxy back its state from before the migration"
# Where the masked node's unit file goes: systemctl refuses to mask a unit whose file is in
# /etc/systemd/system, as the guide installs it, so an operator moves it first.
VENDOR_DIR = "/usr/local/lib/systemd/system"
ASIDE = "/root/kube-proxy.service.aside"

# What the operator did by hand, per role (see `hand_set`).
BY_HAND = {
    "disabled": f"systemctl disable --now {UNIT}",
    "masked": (
        f"systemctl disable --now {UNIT} && mkdir -p {VENDOR_DIR} && "
        f"mv /etc/systemd/system/{UNIT} {VENDOR_DIR}/ && systemctl mask {UNIT}"
    ),
    "absent": f"systemctl disable --now {UNIT} && mv /etc/systemd/system/{UNIT} {ASIDE} && systemctl daemon-reload",
    "enabled": "true",
}
# How the guide's state comes back from each.
GUIDE_AGAIN = {
    "disabled": f"systemctl enable --now {UNIT}",
    "masked": (
        f"systemctl unmask {UNIT} && mv {VENDOR_DIR}/{UNIT} /etc/systemd/system/ && "
        f"rmdir {VENDOR_DIR} /usr/local/lib/systemd && systemctl daemon-reload && systemctl enable --now {UNIT}"
    ),
    "absent": f"mv {ASIDE} /etc/systemd/system/{UNIT} && systemctl daemon-reload && systemctl enable --now {UNIT}",
    "enabled": "true",
}
START_BY_HAND = {
    "disabled": f"systemctl start {UNIT}",
    "masked": f"systemctl unmask {UNIT} && systemctl start {UNIT}",
}


def kube_proxy(sim, node: str) -> dict[str, str]:
    """kube-proxy's unit file state and active state, as systemctl reports them in the node."""
    unit = sim.units(node)[UNIT]
    return {"UnitFileState": unit["UnitFileState"], "ActiveState": unit["ActiveState"]}


@pytest.fixture(scope="module")
def roles(sim):
    nodes = sim.nodes
    assert len(nodes) >= 4, nodes
    return dict(zip(("disabled", "masked", "absent", "enabled"), nodes[-4:], strict=True))


@pytest.fixture(scope="module")
def story(sim, roles):
    """From the guide's state: kube-proxy set by hand, a dry run, the migration, two rollbacks;
    then the guide's state again."""
    # Earlier tests may leave the lab migrated (and the records of their first migration in
    # place): their rollback first, so that the migration here finds what the operator set.
    if any(comparable(sim.snapshot(n)) != comparable(sim.pristine[n]) for n in sim.nodes):
        setup = sim.pyinfra("-y", deploy=ROLLBACK)
        assert setup.returncode == 0, setup.log
    for node in sim.nodes:
        assert comparable(sim.snapshot(node)) == comparable(sim.pristine[node]), node

    told = {}
    restored = False
    try:
        for role, node in roles.items():
            sim.sh(node, BY_HAND[role])
        told["before"] = {node: kube_proxy(sim, node) for node in sim.nodes}
        told["dry"] = sim.pyinfra("--dry")
        told["migrate"] = sim.pyinfra("-y")
        told["records"] = {
            node: sim.sh(node, f"cat {RECORDS}/{UNIT}.json", check=False) for node in sim.nodes
        }
        told["migrated"] = {node: kube_proxy(sim, node) for node in sim.nodes}
        told["rollback"] = sim.pyinfra("-y", deploy=ROLLBACK)
        told["rolled_back"] = sim.snapshot_all()
        told["again"] = sim.pyinfra("-y", deploy=ROLLBACK)
        told["after_again"] = sim.snapshot_all()
        for role, node in roles.items():
            sim.sh(node, GUIDE_AGAIN[role])
        restored = True
        told["guide_again"] = sim.snapshot_all()
        told["live_records"] = {
            node: sim.sh(node, f"ls -A {RECORDS}", check=False).split() for node in sim.nodes
        }
    finally:
        # The guide's state again even when a step above failed: the tests after these need it.
        if not restored:
            for role, node in roles.items():
                sim.sh(node, GUIDE_AGAIN[role], check=False)
    return told


def test_hand_set_states_are_what_the_scenario_needs(roles, story):
    before = story["before"]
    assert before[roles["disabled"]] == {"UnitFileState": "disabled", "ActiveState": "inactive"}
    assert before[roles["masked"]] == {"UnitFileState": "masked", "ActiveState": "inactive"}
    assert before[roles["absent"]] == {"UnitFileState": "", "ActiveState": "inactive"}
    assert before[roles["enabled"]] == {"UnitFileState": "enabled", "ActiveState": "active"}


def test_migration_records_every_node_before_changing_it(sim, roles, story):
    dry, migrate = story["dry"], story["migrate"]
    assert dry.returncode == 0, dry.log
    assert migrate.returncode == 0, migrate.log
    # The record is a change of its own: nodes whose unit needed none are in the plan too.
    assert dry.plan()[OP_MIGRATE] == set(sim.nodes)
    assert migrate.changed()[OP_MIGRATE] == set(sim.nodes)
    for node in sim.nodes:
        record = json.loads(story["records"][node])
        assert record["unit"] == UNIT, node
        assert {
            "UnitFileState": record["unit_file_state"],
            "ActiveState": record["active_state"],
        } == (story["before"][node]), node
        assert story["migrated"][node]["ActiveState"] == "inactive", node


def test_rollback_gives_each_node_its_unit_back_as_it_was(sim, story):
    rollback = story["rollback"]
    assert rollback.returncode == 0, rollback.log
    for node in sim.nodes:
        unit = story["rolled_back"][node]["units"][UNIT]
        assert {
            "UnitFileState": unit["UnitFileState"],
            "ActiveState": unit["ActiveState"],
        } == story["before"][node], node


def test_rollback_says_how_to_start_what_stays_stopped(roles, story):
    log = story["rollback"].log
    for role, command in START_BY_HAND.items():
        node = roles[role]
        lines = [line for line in log.splitlines() if f"[{node}]" in line and command in line]
        assert len(lines) == 1, (node, command, log)
    for role in ("enabled", "absent"):
        assert not [
            line for line in log.splitlines() if f"[{roles[role]}]" in line and "by hand" in line
        ], log


def test_second_rollback_changes_nothing(sim, story):
    again = story["again"]
    assert again.returncode == 0, again.log
    assert again.hosts_changed() == set()
    assert story["after_again"] == story["rolled_back"]
    assert "by hand" not in again.log


def test_nodes_are_as_the_guide_left_them_afterwards(sim, story):
    for node in sim.nodes:
        assert comparable(story["guide_again"][node]) == comparable(sim.pristine[node]), node
        # Each record retired, none waiting: the next migration records afresh.
        names = story["live_records"][node]
        assert names and all(
            name.startswith(f"{UNIT}.json.~restored-") and name.endswith("~") for name in names
        ), node

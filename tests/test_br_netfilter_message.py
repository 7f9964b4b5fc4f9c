"""A built-in br_netfilter is said aloud once per run that changes the node, never on a quiet re-run."""

import logging

from pyinfra.api.state import StateStage
from pyinfra_fixtures import run_operation

from facts.br_netfilter import BrNetfilter
from operations.br_netfilter import br_netfilter_absent

BUILTIN_PERSISTED = {"status": "builtin", "module_support": False, "persisted_in": ["/etc/modules"]}
BUILTIN_DONE = {"status": "builtin", "module_support": False, "persisted_in": []}


def warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_warns_when_detecting_changes(caplog):
    run_operation(br_netfilter_absent, {BrNetfilter: BUILTIN_PERSISTED}, stage=StateStage.Prepare)
    assert warnings(caplog) == [
        "[fakehost] br_netfilter is built into the kernel and cannot be unloaded; it stays active"
    ]


def test_does_not_warn_again_when_executing_after_change_detection(caplog):
    run_operation(br_netfilter_absent, {BrNetfilter: BUILTIN_PERSISTED}, stage=StateStage.Execute)
    assert warnings(caplog) == []


def test_quiet_rerun_only_notes_it(caplog):
    _, host = run_operation(
        br_netfilter_absent, {BrNetfilter: BUILTIN_DONE}, stage=StateStage.Prepare
    )
    assert warnings(caplog) == []
    assert host.noops == [
        "br_netfilter is built into the kernel and cannot be unloaded; it stays active"
    ]

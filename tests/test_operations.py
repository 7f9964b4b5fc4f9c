"""Every operation fixture: given facts in, exactly the commands (and noop, and what it logs) out."""

import logging
import shlex
import sys

import pytest
from pyinfra_fixtures import fixture_cases, fixture_text, load_case, load_object, run_operation


@pytest.mark.parametrize(
    ("name", "case"), fixture_cases("operations"), ids=lambda v: getattr(v, "stem", v)
)
def test_operation(name, case, caplog):
    data = load_case(case)
    operation = load_object("operations", name)
    facts = {load_object("facts", fact): value for fact, value in data["facts"].items()}

    with caplog.at_level(logging.INFO, logger="pyinfra"):
        commands, host = run_operation(operation, facts, **data.get("args", {}))

    # The cluster commands run this package's CLI with the Python that runs pyinfra.
    python = shlex.quote(sys.executable)
    assert [fixture_text(command) for command in commands] == [
        command.replace("{python}", python) for command in data["commands"]
    ]
    assert host.noops == data.get("noops", [data["noop"]] if "noop" in data else [])
    if "logs" in data:
        assert [r.getMessage() for r in caplog.records if r.name == "pyinfra"] == data["logs"]

"""Every operation fixture: given facts in, exactly the commands (and noop) out."""

import pytest
from pyinfra_fixtures import fixture_cases, fixture_text, load_case, load_object, run_operation


@pytest.mark.parametrize(
    ("name", "case"), fixture_cases("operations"), ids=lambda v: getattr(v, "stem", v)
)
def test_operation(name, case):
    data = load_case(case)
    operation = load_object("operations", name)
    facts = {load_object("facts", fact): value for fact, value in data["facts"].items()}

    commands, host = run_operation(operation, facts, **data.get("args", {}))

    assert [fixture_text(command) for command in commands] == data["commands"]
    assert host.noops == data.get("noops", [data["noop"]] if "noop" in data else [])

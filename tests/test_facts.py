"""Every fact fixture: the command it runs, and the value it makes of that command's output."""

import pytest
from pyinfra_fixtures import fixture_cases, fixture_text, load_case, load_object, run_fact


@pytest.mark.parametrize(
    ("name", "case"), fixture_cases("facts"), ids=lambda v: getattr(v, "stem", v)
)
def test_fact(name, case):
    data = load_case(case)
    fact_cls = load_object("facts", name)

    if "command" in data:
        assert fixture_text(fact_cls().command(**data.get("arg", {}))) == data["command"]

    assert run_fact(fact_cls, data["output"]) == data["fact"]

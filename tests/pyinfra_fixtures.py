"""
pyinfra-style fixture tests: command output in, fact value out; facts in, commands out.

Fixtures are JSON files, one case a file, as in pyinfra's own test suite:

- ``fixtures/facts/<module>.<FactClass>/<case>.json``:
  ``{"arg": {...}, "command": "...", "output": [...], "fact": ...}``
- ``fixtures/operations/<module>.<operation>/<case>.json``:
  ``{"args": {...}, "facts": {"<module>.<FactClass>": ...}, "commands": [...], "noop": "..."}``;
  an operation that says several things gives ``"noops": [...]``; ``"logs": [...]``, when given,
  are the lines it logs (``log_once``); ``{python}`` in a command stands for the Python that
  runs pyinfra (the cluster operations run ``python -m cilium_lab`` with it).

``module`` is a module of our ``facts`` or ``operations`` package, or a full ``pyinfra.…`` path.

A command that runs one of our shell scripts (``facts/shell.py``) spells the script's text as
``"$(cat facts/cni_state.sh)"``: the case pins the script and its arguments; what the script does
is tested on real files (``test_commands_on_files.py``) and by shellcheck.
"""

from __future__ import annotations

import importlib
import json
import shlex
from pathlib import Path
from types import SimpleNamespace

from pyinfra.api import StringCommand
from pyinfra.api.state import StateStage
from pyinfra.context import ctx_host, ctx_state

from facts.shell import source

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parent.parent


def load_object(package: str, dotted: str):
    """``cni.CniConfigs`` from our ``package``; ``pyinfra.facts.files.File`` as written."""
    module, _, name = dotted.rpartition(".")
    if not module.startswith("pyinfra."):
        module = f"{package}.{module}"
    return getattr(importlib.import_module(module), name)


def fixture_cases(kind: str) -> list[tuple[str, Path]]:
    """Every (``module.Name``, case file) under ``fixtures/<kind>``, for pytest's parametrize."""
    return [(case.parent.name, case) for case in sorted((FIXTURES / kind).glob("*/*.json"))]


def load_case(path: Path) -> dict:
    return json.loads(path.read_text())


class FakeState:
    """What an operation asks of pyinfra's State."""

    def __init__(self, stage: StateStage):
        self.current_stage = stage

    def should_check_for_changes(self) -> bool:
        return True


class FakeHost:
    """Just enough of ``pyinfra.api.Host`` for an operation's generator.

    Facts come from a mapping of fact class to value; a fact the case did not provide fails the
    test, so an operation cannot quietly read more state than its fixture declares.
    """

    name = "fakehost"
    print_prefix = "[fakehost] "

    def __init__(self, facts: dict, stage: StateStage = StateStage.Prepare):
        self.facts = facts
        self.fact_calls: list[tuple[type, dict]] = []
        self.noops: list[str] = []
        self.state = FakeState(stage)
        self.groups: list[str] = []
        self.data = SimpleNamespace()

    def get_fact(self, cls, *args, **kwargs):
        self.fact_calls.append((cls, kwargs))
        if cls not in self.facts:
            raise AssertionError(
                f"operation read fact {cls.__name__}, which the case does not give"
            )
        return self.facts[cls]

    def noop(self, description: str) -> None:
        self.noops.append(description)


def command_text(command) -> str:
    if isinstance(command, StringCommand):
        return command.get_raw_value()
    return str(command)


def fixture_text(command) -> str:
    """A command as the fixtures spell it: each of our scripts' quoted text as ``"$(cat PATH)"``."""
    text = command_text(command)
    for package in ("facts", "operations"):
        for script in sorted((REPO / package).glob("*.sh")):
            quoted = shlex.quote(source(package, script.name))
            text = text.replace(quoted, f'"$(cat {package}/{script.name})"')
    return text


def run_operation(
    operation, facts: dict, stage: StateStage = StateStage.Prepare, host=None, **kwargs
):
    """Run an operation's generator against given facts (or on a given fake host, to run several
    operations in one "run"); return (commands, fake host)."""
    host = host or FakeHost(facts, stage=stage)
    with ctx_state.use(host.state), ctx_host.use(host):
        commands = [command_text(command) for command in operation._inner(**kwargs)]
    return commands, host


def run_fact(fact_cls, output: list[str]):
    """Process given command output the way pyinfra does: no output gives the default."""
    fact = fact_cls()
    if not output:
        return fact.default()
    return fact.process(output)

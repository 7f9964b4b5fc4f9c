"""The run's read of a node (operations/node_read.py) and the one command behind it
(facts/node_state.py): each fact's command run with the others under one shell, its output
split back to its own ``process``; the answers used by the node operations until one changes
the node or the cluster phase changes the cluster."""

from __future__ import annotations

import runpy
import subprocess
from types import SimpleNamespace

import pytest
from pyinfra.api import FactBase
from pyinfra.api.exceptions import FactProcessError
from pyinfra_fixtures import REPO, FakeHost, run_operation

from deploys.support import data, node_facts
from facts.br_netfilter import BrNetfilter
from facts.kube_proxy_rules import KubeProxyRules
from facts.node_state import NodeState, fact_key
from operations.br_netfilter import br_netfilter_absent
from operations.cni import cni_configs_absent
from operations.kube_proxy_rules import kube_proxy_rules_absent
from operations.node_read import NodeRead, reads_node
from operations.systemd_unit import unit_stopped_and_disabled


class Printed(FactBase):
    """The lines printf prints, as given."""

    @staticmethod
    def default():
        return "default"

    def command(self, text, status=0):
        return f"printf %s '{text}'; exit {status}"

    def process(self, output):
        if output == ["unreadable"]:
            raise FactProcessError("cannot read it")
        return list(output)


def sh(command: str) -> list[str]:
    """Run a command as pyinfra would (sh -c), its stdout as pyinfra's lines."""
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    return result.stdout.splitlines()


def alone(cls, kwargs):
    """The fact read alone, as pyinfra reads it: no output gives the default."""
    fact = cls()
    lines = sh(str(fact.command(**kwargs)))
    return fact.process(lines) if lines else fact.default()


def together(facts):
    fact = NodeState()
    return fact.process(sh(fact.command(facts)))


CASES = [
    (Printed, {"text": "one\ntwo"}),  # no newline at the end
    (Printed, {"text": "one\ntwo\n"}),
    (Printed, {"text": "one\n\n"}),  # a last empty line of its own
    (Printed, {"text": ""}),  # no output: the default
    (Printed, {"text": "\n"}),
]


def test_each_fact_read_together_is_what_it_is_read_alone():
    answers = together(CASES)
    assert answers == {fact_key(cls, kwargs): alone(cls, kwargs) for cls, kwargs in CASES}
    assert answers[fact_key(*CASES[0])] == ["one", "two"]
    assert answers[fact_key(*CASES[2])] == ["one", ""]
    assert answers[fact_key(*CASES[3])] == "default"


def test_a_fact_that_fails_or_cannot_be_read_is_left_to_be_read_alone():
    facts = [
        (Printed, {"text": "half", "status": 3}),
        (Printed, {"text": "unreadable"}),
        (Printed, {"text": "fine"}),
    ]
    assert together(facts) == {fact_key(*facts[2]): ["fine"]}


def test_facts_that_need_a_command_checked_first_are_not_read_together():
    class NeedsSystemctl(Printed):
        def requires_command(self, **kwargs):
            return "systemctl"

    with pytest.raises(ValueError, match="NeedsSystemctl cannot be read with other facts"):
        NodeState().command([(NeedsSystemctl, {"text": "x"})])


@pytest.mark.parametrize("cls", [KubeProxyRules, BrNetfilter])
def test_the_deploys_facts_read_together_on_this_machine_as_alone(cls):
    """The real commands, on this machine: its iptables rules and its modules."""
    facts = [(cls, {}), (Printed, {"text": "after"})]
    assert together(facts) == {
        fact_key(cls, {}): alone(cls, {}),
        fact_key(Printed, {"text": "after"}): ["after"],
    }


def read_of(facts, answers, stale=lambda: False) -> tuple[NodeRead, FakeHost]:
    host = FakeHost({NodeState: answers})
    read = NodeRead(facts, stale=stale)
    read.read(host)
    return read, host


def test_known_while_nothing_changed_for_the_same_arguments_only():
    facts = [(Printed, {"text": "a"})]
    read, host = read_of(facts, {fact_key(*facts[0]): ["a"]})
    assert host.fact_calls == [(NodeState, {"facts": facts})]
    assert read.known(Printed, text="a") == ["a"]
    assert read.known(Printed, text="b") is None
    assert read.known(KubeProxyRules) is None
    read.changed()
    assert read.known(Printed, text="a") is None


def test_stale_once_the_cluster_changed():
    cluster_changed = []
    facts = [(Printed, {"text": "a"})]
    read, _ = read_of(facts, {fact_key(*facts[0]): ["a"]}, stale=lambda: bool(cluster_changed))
    assert read.known(Printed, text="a") == ["a"]
    cluster_changed.append(True)
    assert read.known(Printed, text="a") is None


def test_an_operation_makes_the_read_stale_with_its_first_command_only():
    @reads_node
    def operation(commands, node_read=None):
        yield from commands

    facts = [(Printed, {"text": "a"})]
    read, _ = read_of(facts, {fact_key(*facts[0]): ["a"]})
    assert list(operation([], node_read=read)) == []
    assert read.known(Printed, text="a") == ["a"]
    seen = []
    for command in operation(["first", "second"], node_read=read):
        seen.append((command, read.known(Printed, text="a")))
    assert seen == [("first", None), ("second", None)]


def group_data_host():
    """A node with the project's group data (all.py), as pyinfra gives it."""
    values = {
        key: value
        for key, value in runpy.run_path(
            str(REPO / "inventories" / "group_data" / "all.py")
        ).items()
        if not key.startswith("__")
    }
    return SimpleNamespace(name="worker0", data=SimpleNamespace(get=values.get))


def test_the_deploys_node_operations_read_nothing_beyond_their_node_read():
    """Every node operation of deploys/cilium.py, given the data the deploy gives it, takes each
    fact from the read of node_facts.migration: a no-change re-run asks each node once."""
    node = group_data_host()
    facts = node_facts.migration(node)
    answers = {fact_key(cls, kwargs): cls.default() for cls, kwargs in facts}
    read, host = read_of(facts, answers)
    # Any other fact the operations read would fail the case: the fake host holds none.
    host.facts, host.fact_calls = {}, []
    operations = [
        (unit_stopped_and_disabled, data.kube_proxy_unit(node)),
        (kube_proxy_rules_absent, {}),
        (cni_configs_absent, {**data.cni_dirs(node), "restart_unit": "kubelet.service"}),
        (br_netfilter_absent, {"backup_dir": data.value(node, "modules_backup_dir")}),
    ]
    for operation, kwargs in operations:
        # Each reads its answer before its first command makes the read stale.
        run_operation(operation, {}, host=host, node_read=read, **kwargs)
        read.read(SimpleNamespace(get_fact=lambda cls, **kwargs: answers))
    assert host.fact_calls == []

"""The preflight's verdict for the nodes (deploys/support/preflight.py): each node's lock is
taken beside the checks, the first node's alone before the others, and each node that passes
its own checks is read as soon as its lock is held, while the workstation's cluster read still
runs. A node whose read fails fails the verdict; a node that fails a check, or whose lock is
refused, is not read.

The hosts, their locks and their reads are stand-ins that record what the preflight asks of
them, in the order it asks; the greenlets are gevent's own."""

from __future__ import annotations

from types import SimpleNamespace

import gevent
import pytest

from deploys.support import preflight
from deploys.support.lock import NodeLocks
from deploys.support.run import Run

NODES = ("control0", "control1", "worker0")


class Host:
    def __init__(self, name, groups=("control",)):
        self.name = name
        self.groups = list(groups)
        self.data = SimpleNamespace(get={"node_lock_file": f"/run/lock/{name}"}.get)
        self.asked = []

    def get_fact(self, cls, **kwargs):
        self.asked.append(cls.__name__)
        return {}


class Inventory(list):
    def get_active_hosts(self):
        return list(self)


class State:
    def __init__(self, hosts):
        self.inventory = Inventory(hosts)
        self.activated_hosts = set(hosts)
        self.failed_hosts = set()
        self.config = SimpleNamespace(FAIL_PERCENT=0)

    def is_host_in_limit(self, host):
        return True


class Locks(NodeLocks):
    """Takes a lock unless told to refuse it, after a pause (one round trip)."""

    def __init__(self, events, refuse=()):
        super().__init__()
        self.events, self.refuse = events, set(refuse)

    def take(self, host, path, me, timeout=30):
        self.events.append(("lock", host.name))
        gevent.sleep(0.01)
        if host.name in self.refuse:
            return f"another run is changing this node (lock {path})"
        self.held.add(host.name)
        self.events.append(("locked", host.name))
        return None


def lab(refuse=(), fail_check=(), fail_read=(), cluster_seconds=0.05):
    events = []
    hosts = [Host(name) for name in NODES] + [Host("@local", groups=("local",))]
    state = State(hosts)
    for host in hosts:
        host.state = state
    run = Run(state)
    run.locks = Locks(events, refuse)

    def node_read(host, facts):
        # Run.node_read's own rule: only while this run holds the node's lock.
        assert host.name in run.locks.held, f"{host.name} read without its lock"
        events.append(("facts", host.name, facts))
        events.append(("read", host.name))
        if host.name in fail_read:
            state.failed_hosts.add(host)  # as pyinfra marks a host whose fact failed

    run.node_read = node_read

    def check_node(host):
        events.append(("check", host.name))
        gevent.sleep(0.02)
        return ["sudo asks for a password"] if host.name in fail_check else []

    def check_local(host, run):
        events.append(("cluster read", "start"))
        gevent.sleep(cluster_seconds)
        events.append(("cluster read", "end"))
        return []

    def verdict():
        return preflight._verdict(
            run, check_node, check_local, node_facts=lambda host: [("Facts", host.name)]
        )

    return run, events, verdict


def reads(events):
    return [e[1] for e in events if e[0] == "read"]


def test_every_node_is_read_once_its_lock_is_held_while_the_cluster_read_runs():
    run, events, verdict = lab()
    assert verdict() == {}
    assert sorted(reads(events)) == sorted(NODES)
    # Each node read with its own facts, after its lock and its check.
    for name in NODES:
        assert ("facts", name, [("Facts", name)]) in events
        read = events.index(("read", name))
        assert events.index(("locked", name)) < read
        assert events.index(("check", name)) < read
    # Beside the cluster read, not after it.
    assert events.index(("read", NODES[-1])) < events.index(("cluster read", "end"))


def test_the_first_nodes_lock_is_taken_before_any_other_is_tried():
    run, events, verdict = lab()
    verdict()
    assert sorted(e[1] for e in events if e[0] == "locked") == sorted(NODES)
    first = events.index(("locked", "control0"))
    for name in NODES[1:]:
        assert events.index(("lock", name)) > first, name


def test_a_node_that_fails_a_check_is_not_read_and_the_verdict_names_it():
    run, events, verdict = lab(fail_check={"worker0"})
    assert verdict() == {"worker0": ["sudo asks for a password"]}
    assert sorted(reads(events)) == ["control0", "control1"]


def test_a_node_whose_read_fails_fails_the_verdict():
    run, events, verdict = lab(fail_read={"control1"})
    assert verdict() == {
        "control1": [
            "reading the node's state failed (the line above says why): fix it before going on"
        ]
    }


def test_a_refused_lock_is_the_verdict_and_that_node_is_not_read():
    run, events, verdict = lab(refuse={"worker0"})
    found = verdict()
    assert list(found) == ["worker0"]
    assert found["worker0"][0].startswith("another run is changing this node")
    assert "worker0" not in reads(events)


def test_when_the_first_nodes_lock_is_refused_no_other_is_taken_and_no_node_is_read():
    run, events, verdict = lab(refuse={"control0"})
    assert list(verdict()) == ["control0"]
    assert [e[1] for e in events if e[0] == "lock"] == ["control0"]
    assert reads(events) == []


def test_a_node_is_read_once_while_the_run_holds_its_lock():
    node = Host("worker0")
    run = Run(State([node]))
    run.locks.held.add("worker0")
    read = run.node_read(node, [])
    # The same read for every later call (the deploy's, after the verdict).
    assert run.node_read(node, []) is read
    assert node.asked == ["NodeState"]


def test_a_node_is_not_read_without_its_lock():
    node = Host("worker0")
    run = Run(State([node]))
    with pytest.raises(RuntimeError, match="worker0 is read only while this run holds its lock"):
        run.node_read(node, [])
    assert node.asked == []

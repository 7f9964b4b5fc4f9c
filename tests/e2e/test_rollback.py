"""
deploys/rollback.py on the simulated lab: migrate, then roll back, and every node is as the sim
booted it, file for file, with its units and its iptables rules; a second rollback changes
nothing. Runs after the deploy's scenarios, from whatever state they left the nodes in.
"""

from __future__ import annotations

import subprocess

import pytest
from e2e_sim import OURS, ROLLBACK, comparable

pytestmark = pytest.mark.e2e

OP_BR_NETFILTER = "Load br_netfilter at boot again"
OP_CNI = "Restore the old CNI configurations and restart kubelet"
OP_KUBE_PROXY = "Give kube-proxy back its state from before the migration"
OP_UNINSTALL = "Uninstall Cilium"
OP_ROUTES = "Route the pod CIDRs via the nodes again"


def backed_up_files(snap: dict) -> list[str]:
    """Files left in our backup directories other than numbered older copies (NAME.~N~)."""
    return sorted(
        path
        for path, entry in snap["files"].items()
        if path.startswith(OURS + "/") and entry["type"] == "f" and not path.endswith("~")
    )


@pytest.fixture(scope="module")
def round_trip(sim):
    migrate = sim.pyinfra("-y")
    migrated = sim.snapshot_all()
    dry = sim.pyinfra("--dry", deploy=ROLLBACK)
    after_dry = sim.snapshot_all()
    rollback = sim.pyinfra("-y", deploy=ROLLBACK)
    rolled_back = sim.snapshot_all()
    again = sim.pyinfra("-y", deploy=ROLLBACK)
    return migrate, migrated, dry, after_dry, rollback, rolled_back, again, sim.snapshot_all()


def test_rollback_restores_every_node_as_it_was(sim, round_trip):
    migrate, migrated, _, _, rollback, rolled_back, _, _ = round_trip
    assert migrate.returncode == 0, migrate.log
    assert rollback.returncode == 0, rollback.log
    # The migration did change every node, or the round trip would prove nothing.
    assert all(comparable(migrated[n]) != comparable(sim.pristine[n]) for n in sim.nodes)
    for node in sim.nodes:
        assert comparable(rolled_back[node]) == comparable(sim.pristine[node]), node
        assert any("KUBE-" in line for line in rolled_back[node]["iptables"]), node
        assert backed_up_files(rolled_back[node]) == [], node


def test_rollback_dry_run_changes_nothing_and_lists_what_the_run_does(sim, round_trip):
    _, migrated, dry, after_dry, rollback, _, _, _ = round_trip
    assert dry.returncode == 0, dry.log
    assert after_dry == migrated
    assert dry.plan() == rollback.changed()
    for op in (OP_BR_NETFILTER, OP_CNI, OP_KUBE_PROXY):
        assert rollback.changed()[op] == set(sim.nodes), op
    for op in (OP_UNINSTALL, OP_ROUTES):
        assert rollback.changed()[op] == {"@local"}, op


def test_rollback_uninstalls_cilium_and_waits_for_its_agents(sim, round_trip):
    """`helm uninstall --wait` returned, and the agents were gone before the nodes got their
    old CNI configurations back."""
    assert sim.helm_revisions() == []
    assert not [p for p in sim.pods() if p.startswith("kube-system/cilium")]
    routes = subprocess.run(
        ["ip", "-4", "route", "show"], capture_output=True, text=True, check=True
    ).stdout
    for node in sim.nodes:
        assert f"{sim.cfg.pod_cidr(node)} via {sim.cfg.address(node)} " in routes, node


def test_second_rollback_changes_nothing(sim, round_trip):
    _, _, _, _, _, rolled_back, again, final = round_trip
    assert again.returncode == 0, again.log
    assert again.hosts_changed() == set()
    assert final == rolled_back


def test_migrate_after_rollback_converges_again(sim, round_trip):
    run = sim.pyinfra("-y")
    assert run.returncode == 0, run.log
    assert run.hosts_changed() == set(sim.nodes) | {"@local"}
    assert sim.helm_revisions() == ["sh.helm.release.v1.cilium.v1"]
    rerun = sim.pyinfra("-y")
    assert rerun.hosts_changed() == set()


def test_rollback_refuses_a_node_never_migrated(sim, round_trip):
    """A node without the migration's record, live or retired, is refused in one line naming
    it and the record, before any change on any node (the lab is migrated: there is plenty the
    rollback would change)."""
    node, units = sim.nodes[-1], f"{OURS}/units"
    assert sim.pyinfra("-y").returncode == 0
    sim.sh(node, f"mv {units} /root/units.aside")
    try:
        before = sim.snapshot_all()
        refused = sim.pyinfra("-y", deploy=ROLLBACK)
        after = sim.snapshot_all()
    finally:
        sim.sh(node, f"mv /root/units.aside {units}")
    assert refused.returncode != 0, refused.log
    assert "Traceback" not in refused.log, refused.log
    lines = [line.strip() for line in refused.log.splitlines() if "preflight:" in line]
    assert lines == [
        f"[{node}] preflight: no record of kube-proxy.service's state from before the migration: "
        f"{units}/kube-proxy.service.json is missing, and no retired one beside it; this node was "
        "not migrated by cilium-lab, so there is nothing to roll back: leave it out with "
        "--exclude, or restore it by hand"
    ], refused.log
    assert "nothing was changed on any host" in refused.log
    assert after == before
    assert sim.helm_revisions() == ["sh.helm.release.v1.cilium.v1"]

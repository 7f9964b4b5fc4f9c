"""
Preflight on the simulated lab: when any host cannot take the migration, the run stops before
its first change and every node stays byte-identical, with and without ``-y`` and under ``--dry``.

The workstation case points the ``local`` host at an API server that does not answer (nothing
listens on 127.0.0.1:9): the cluster facts' own reachability check is what stops the run.
"""

from __future__ import annotations

import subprocess

import pytest
import yaml
from e2e_sim import DEPLOY, GROUP_DATA, PYINFRA, Run, _json_or_none

NODE = "worker0"
DRIFTED = "worker1"


def pending_change(sim) -> None:
    """Give the run something to change, so that 'nothing changed' means the preflight held it."""
    sim.sh(DRIFTED, "systemctl enable --now kube-proxy.service 2>/dev/null")


@pytest.fixture
def unresolvable_api_name(sim):
    sim.sh(
        NODE,
        "cp -p /etc/hosts /etc/hosts.e2e && sed -i '/ kubernetes$/d; s/ kubernetes / /' /etc/hosts",
    )
    assert sim.sh(NODE, "getent hosts kubernetes || true").strip() == ""
    try:
        yield
    finally:
        sim.sh(NODE, "mv /etc/hosts.e2e /etc/hosts")


@pytest.mark.parametrize("mode", ["-y", "--dry"])
def test_api_name_unresolvable_on_one_node_stops_every_node(sim, unresolvable_api_name, mode):
    pending_change(sim)
    before = sim.snapshot_all()

    run = sim.pyinfra(mode)

    assert run.returncode != 0, run.log
    assert f"[{NODE}] preflight: 'kubernetes' does not resolve on the node" in run.log
    assert "nothing was changed on any host" in run.log
    # Only the failing node is named.
    assert [
        line for line in run.log.splitlines() if "preflight:" in line and NODE not in line
    ] == []
    assert sim.snapshot_all() == before


@pytest.fixture
def migrated(sim):
    """The lab migrated before the name goes: a first migration restarts every kubelet, and the
    sim's kubelets (kwok) find the API server by that very name."""
    run = sim.pyinfra("-y")
    assert run.returncode == 0, run.log


def test_skipping_the_check_lets_the_run_go_on(sim, migrated, unresolvable_api_name):
    pending_change(sim)

    run = sim.pyinfra("-y", "--data", "preflight_skip=api_name,api_port")

    assert run.returncode == 0, run.log
    assert DRIFTED in run.hosts_changed()


@pytest.fixture
def with_workstation(sim, tmp_path):
    """The sim's inventory plus the ``local`` group, its kubeconfig naming a server that does not answer."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "lab", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "admin", "user": {"token": "not-used"}}],
                "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "admin"}}],
                "current-context": "lab",
            }
        )
    )
    inventory = tmp_path / "inventory.py"
    inventory.write_text(sim.inventory.read_text() + '\nlocal = ["@local"]\n')
    return inventory, kubeconfig


def test_unreachable_api_server_stops_every_node_even_with_yes(sim, with_workstation):
    inventory, kubeconfig = with_workstation
    pending_change(sim)
    before = sim.snapshot_all()

    command = [
        str(PYINFRA),
        "--json",
        "-y",
        "--group-data",
        str(GROUP_DATA),
        "--data",
        f"kubeconfig={kubeconfig}",
        str(inventory),
        str(DEPLOY),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    run = Run(proc.returncode, _json_or_none(proc.stdout), proc.stderr)

    assert run.returncode != 0, run.log
    assert "127.0.0.1:9" in run.log
    assert "[@local] preflight: the cluster checks failed" in run.log
    assert sim.snapshot_all() == before

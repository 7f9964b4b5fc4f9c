"""
A simulated lab of its own, driven from outside as a user drives it: the end-to-end tests'
(tests/e2e) and the benchmark's (benchmarks/run.py).

Each lab has a home, a bridge, a /24 and helm's homes of its own, so that a user's sim
(10.251.0.0/24), the test suite's and the benchmark's run side by side. It goes up and down
through ``cilium-lab sim``, and the deploy runs through pyinfra's CLI with the lab's inventory
and the repository's group data: both as subprocesses, so nothing here imports the deploy
(deploys/, facts/, operations/). Node state is read from inside the nodes with nsenter, never
from the deploy's own reports.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from cilium_lab.sim.config import SimConfig
from cilium_lab.sim.network import free_subnet
from cilium_lab.sim.nodes import leader_pid

__all__ = [
    "BENCH_SUBNETS",
    "BIN",
    "CILIUM_LAB",
    "DEFAULT_CHARTS",
    "DEPLOY",
    "E2E_SUBNETS",
    "GROUP_DATA",
    "PYINFRA",
    "REPO",
    "SimLab",
    "free_subnet",
]

REPO = Path(__file__).resolve().parents[2]
# The venv's tools, beside the interpreter running this (not resolved: .venv/bin/python is a
# symlink to the system's python).
BIN = Path(sys.executable).parent
PYINFRA = BIN / "pyinfra"
CILIUM_LAB = BIN / "cilium-lab"
DEPLOY = REPO / "deploys" / "cilium.py"
# A sim inventory outside inventories/ does not pick up the group data by itself.
GROUP_DATA = REPO / "inventories" / "group_data"
# Cilium's charts, served to the lab as its helm repository (the Makefile's default too).
DEFAULT_CHARTS = REPO.parent / "shared" / "charts"
# Where each lab takes its /24 from (free_subnet): a user's sim has 10.251.0.0/24.
E2E_SUBNETS = "10.252.0.0/16"
BENCH_SUBNETS = "10.253.0.0/16"


class SimLab:
    """A sim in an environment of its own, driven through the project's CLI; node state read with nsenter."""

    def __init__(self, home: Path, bridge: str, subnet: str, helm_home: Path | None = None):
        self.home = home
        self.bridge = bridge
        self.subnet = subnet
        self.inventory = home / "inventory.py"
        # helm's repositories and cache: the lab's own, not the user's (in helm_home, default the sim's home).
        helm_home = home if helm_home is None else helm_home
        self.env = {
            **os.environ,
            "CILIUM_LAB_SIM_HOME": str(home),
            "CILIUM_LAB_SIM_BRIDGE": bridge,
            "CILIUM_LAB_SIM_SUBNET": subnet,
            **{
                f"HELM_{name}_HOME": str(helm_home / f"helm-{name.lower()}")
                for name in ("CONFIG", "CACHE", "DATA")
            },
        }

    # The sim, through its CLI.

    def run_cli(self, *args: str, shield: bool = False, **kwargs) -> subprocess.CompletedProcess:
        """``cilium-lab sim ARGS`` in the lab's environment; ``kwargs`` go to subprocess.run.

        ``shield``: in a session of its own, so that Ctrl-C here never reaches it (`sim up`
        interrupted while it starts a node can leave that node running where `sim down` does not
        find it); on Ctrl-C, wait for it to finish, then raise. ``kwargs`` then go to Popen
        (no capture_output: give stdout a file)."""
        command = [str(CILIUM_LAB), "sim", *args]
        if not shield:
            return subprocess.run(command, env=self.env, cwd=REPO, **kwargs)
        proc = subprocess.Popen(command, env=self.env, cwd=REPO, start_new_session=True, **kwargs)
        try:
            proc.wait()
        except KeyboardInterrupt:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            print(f"interrupted: waiting for cilium-lab sim {args[0]} to finish", flush=True)
            proc.wait()
            raise
        return subprocess.CompletedProcess(command, proc.returncode)

    def up(
        self, count: int, charts: Path | None = None, data_plane: str = "kwok", **kwargs
    ) -> subprocess.CompletedProcess:
        """``sim up`` with ``count`` nodes, writing the lab's inventory: with the control plane
        and ``charts`` as its helm repository, or without a control plane (the node phase alone).
        The fast lab (kwok plays the kubelets) unless ``data_plane`` is ``real``."""
        plane = ["--charts", str(charts)] if charts else ["--no-control-plane"]
        return self.run_cli(
            "up",
            "--nodes",
            str(count),
            "--inventory",
            str(self.inventory),
            "--data-plane",
            data_plane,
            *plane,
            **kwargs,
        )

    def down(self, **kwargs) -> subprocess.CompletedProcess:
        return self.run_cli("down", **kwargs)

    @property
    def is_up(self) -> bool:
        return (self.home / "state.json").exists()

    @property
    def cfg(self) -> SimConfig | None:
        return SimConfig.load(self.home)

    @property
    def nodes(self) -> list[str]:
        return self.cfg.nodes

    # The deploy, through pyinfra's CLI.

    def pyinfra_command(self, *args: str, deploy: Path = DEPLOY) -> list[str]:
        return [
            str(PYINFRA),
            *args,
            "--group-data",
            str(GROUP_DATA),
            str(self.inventory),
            str(deploy),
        ]

    def run_pyinfra(
        self, *args: str, deploy: Path = DEPLOY, **kwargs
    ) -> subprocess.CompletedProcess:
        """pyinfra ARGS on the lab's inventory; ``kwargs`` go to subprocess.run."""
        return subprocess.run(
            self.pyinfra_command(*args, deploy=deploy), cwd=REPO, env=self.env, **kwargs
        )

    # A stand-in for a second lab on one machine: every lab routes the guide's pod CIDRs
    # (10.1.0.0/16, ...) through this machine, and the first one up holds them in the main table,
    # which `sim up` then leaves alone. Pod traffic in from this lab's bridge is then routed by a
    # table of the lab's own, for the CIDRs the sim could not route itself, as a workstation of
    # its own would route them. A scenario that takes the host routes away takes these too.

    # The lab's table is this plus its subnet's third octet (a driver of another kind of labs
    # sets another base, so that two never share a table).
    own_table_base = 20000

    @property
    def _own_table(self) -> str:
        return str(self.own_table_base + self.cfg.network.network_address.packed[2])

    def own_pod_routes(self) -> list[list[str]]:
        """Route, from this lab's bridge, each pod CIDR the sim could not route in the main
        table; the routes made ([cidr, via] each)."""
        cfg = self.cfg
        routed = {cidr for cidr, _ in cfg.routes}
        wanted = [
            [cfg.pod_cidr(n), str(cfg.address(n))]
            for n in cfg.nodes
            if cfg.pod_cidr(n) not in routed
        ]
        if wanted:
            table = self._own_table
            _ip("rule", "add", "iif", cfg.bridge, "lookup", table, "priority", table)
            for cidr, via in wanted:
                _ip("route", "add", cidr, "via", via, "dev", cfg.bridge, "table", table)
        return wanted

    def drop_own_pod_routes(self) -> None:
        if not self.cfg:
            return
        table = self._own_table
        for rule in json.loads(_ip("-j", "rule", "show").stdout or "[]"):
            if str(rule.get("table")) == table and rule.get("iif") == self.bridge:
                _ip("rule", "del", "priority", str(rule["priority"]))
        _ip("route", "flush", "table", table)

    # The nodes, from inside.

    def leader(self, node: str) -> int | None:
        """The node's PID 1, or None when it is not running."""
        return leader_pid(self.cfg, node)

    def leaders(self) -> dict[str, int | None]:
        cfg = self.cfg
        return {name: leader_pid(cfg, name) for name in cfg.nodes}

    @staticmethod
    def nsenter(leader: int, script: str) -> subprocess.CompletedProcess:
        """``sh -c script`` in every namespace of the node whose PID 1 is ``leader``."""
        return subprocess.run(
            ["nsenter", "-t", str(leader), "-a", "sh", "-c", script], capture_output=True, text=True
        )


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True)

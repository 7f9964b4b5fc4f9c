"""
A simulated lab with the real data plane (``sim up --data-plane real``): real kubelets,
containerd, kube-proxy and the bridge CNI on every node, images from the sim's own registry.
One per test session, in a home, bridge and subnet of its own, through cilium_lab.sim.harness's
SimLab (the project's CLI); taken down at the end, and teardown fails if anything is left.

``real_lab`` is the fixture; its node count is ``CILIUM_LAB_E2E_REAL_NODES`` (default 2), or
a test's indirect parameter. The first ``sim up`` on a machine builds the node software and
images (20-30 minutes; a cache lock makes a second one wait); after that it takes seconds.

A stand-in the fixture adds, named here as the README names the sim's: **a routing table of
the lab's own for its pod traffic.** Every lab routes the guide's pod CIDRs (10.1.0.0/16, ...)
through this machine, and a second lab up on the machine (the kwok session ``sim``, a user's
sim) may already hold those routes in the main table, which ``sim up`` then leaves alone. Pod
traffic that comes in from this lab's bridge is then routed by a table of its own (a rule on
the incoming interface, ``SimLab.own_pod_routes`` in cilium_lab/sim/harness.py), as a workstation of its own would. Only for the
CIDRs the sim could not route itself; what it does not hold still falls to the main table and
the sim's FORWARD guard. A migration scenario that takes the host routes away takes these too
(``drop_own_pod_routes``).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from e2e_sim import CHARTS, Sim, leftovers, why_not_runnable

from cilium_lab.sim import images
from cilium_lab.sim.harness import CILIUM_LAB, E2E_SUBNETS, REPO, free_subnet

DEFAULT_NODES = int(os.environ.get("CILIUM_LAB_E2E_REAL_NODES") or 2)
# The first build of the node software and images is long, and another session's build may
# hold the cache's lock meanwhile.
UP_TIMEOUT = float(os.environ.get("CILIUM_LAB_E2E_REAL_UP_TIMEOUT") or 3600)


class RealLab(Sim):
    """A real-data-plane sim, with what tests read of it: kubeconfig, images, node shells."""

    # Real agents pull their image and compile their datapath on every node first.
    pyinfra_timeout = 900

    def __init__(self, home: Path, bridge: str, subnet: str, nodes: int = DEFAULT_NODES):
        super().__init__(home, bridge, subnet)
        self.count = nodes

    def up_real(self, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
        return self.run_cli(
            "up",
            "--nodes",
            str(self.count),
            "--data-plane",
            "real",
            "--charts",
            str(CHARTS),
            "--inventory",
            str(self.inventory),
            "--timeout",
            str(timeout),
            **kwargs,
        )

    @property
    def kubeconfig(self) -> Path:
        return self.cfg.kubeconfig

    def image(self, name: str = "agnhost") -> str:
        """An image in the lab's registry (``images.IMAGES``: pause, coredns, agnhost)."""
        return images.image_ref(self.cfg, name)

    @property
    def registry(self) -> str:
        return images.registry_address(self.cfg)

    def cilium_lab(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        """``cilium-lab ARGS`` in the lab's environment (kwargs go to subprocess.run)."""
        return subprocess.run([str(CILIUM_LAB), *args], env=self.env, cwd=REPO, **kwargs)


@pytest.fixture(scope="session")
def real_lab(request, tmp_path_factory):
    reason = why_not_runnable()
    if reason:
        pytest.skip(reason)
    if not (CHARTS / "index.yaml").is_file():
        pytest.skip(
            f"Cilium's charts are not in {CHARTS} (set CILIUM_LAB_CHARTS to their directory)"
        )
    count = getattr(request, "param", None) or DEFAULT_NODES
    home = tmp_path_factory.mktemp("real-lab")
    bridge = f"cilr{os.getpid() % 100000}"
    # Another offset than the kwok session sim's (conftest), which may be up beside it.
    lab = RealLab(home, bridge, free_subnet(E2E_SUBNETS, offset=os.getpid() + 128), count)
    verbose = os.environ.get("CILIUM_LAB_E2E_VERBOSE")
    up = lab.up_real(
        stdout=None if verbose else subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=UP_TIMEOUT,
    )
    nodes = lab.cfg.nodes if lab.cfg else []
    try:
        assert up.returncode == 0, f"cilium-lab sim up --data-plane real failed:\n{up.stdout}"
        lab.own_pod_routes()
        yield lab
    finally:
        lab.drop_own_pod_routes()
        down = lab.down(capture_output=True, text=True)
        left = leftovers(home, bridge, nodes)
        assert down.returncode == 0 and not left, (
            f"sim down: {down.stdout}{down.stderr}; left behind: {left}"
        )

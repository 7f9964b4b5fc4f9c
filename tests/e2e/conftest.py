"""
End-to-end: the real pyinfra CLI, over real SSH, against the simulated lab's systemd nodes.

One sim per test session, in a home, bridge and subnet of its own (a user's sim keeps running);
it is torn down at the end of the session even when tests fail, and teardown fails if anything
of it is left on the machine.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from e2e_sim import CHARTS, Sim, leftovers, why_not_runnable
from real_lab import real_lab  # noqa: F401 (the real data plane's lab, a fixture of its own)

from cilium_lab.sim.harness import E2E_SUBNETS, free_subnet


def pytest_collection_modifyitems(items):
    # Every test here boots or drives the sim: `pytest -m "not e2e"` must never reach one.
    for item in items:
        if "tests/e2e" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
    # The real data plane's lab last: every lab routes the guide's pod CIDRs through this machine,
    # and the kwok lab's scenarios check those routes, so that lab must be up first and hold them
    # (the real lab routes its own by a table of its own then, real_lab.py). Stable: each group
    # keeps its order.
    items.sort(key=lambda item: "real_lab" in getattr(item, "fixturenames", ()))


@pytest.fixture(scope="session")
def sim(tmp_path_factory):
    reason = why_not_runnable()
    if reason:
        pytest.skip(reason)
    home = tmp_path_factory.mktemp("sim")
    bridge = f"cilt{os.getpid() % 100000}"
    sim = Sim(home, bridge, free_subnet(E2E_SUBNETS, offset=os.getpid()))
    if not (CHARTS / "index.yaml").is_file():
        pytest.skip(
            f"Cilium's charts are not in {CHARTS} (set CILIUM_LAB_CHARTS to their directory)"
        )
    # The first build (debootstrap) shows its progress in pytest's live output with -s.
    verbose = os.environ.get("CILIUM_LAB_E2E_VERBOSE")
    up = sim.up(
        6, CHARTS, stdout=None if verbose else subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    nodes = sim.cfg.nodes if sim.cfg else []
    try:
        assert up.returncode == 0, f"cilium-lab sim up failed:\n{up.stdout}"
        # The nodes as the guide leaves them, before any test touched them.
        sim.pristine = sim.snapshot_all()
        yield sim
    finally:
        down = sim.down(capture_output=True, text=True)
        left = leftovers(home, bridge, nodes)
        assert down.returncode == 0 and not left, (
            f"sim down: {down.stdout}{down.stderr}; left behind: {left}"
        )

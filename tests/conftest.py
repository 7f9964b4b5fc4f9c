import os
import shutil
import sys
from pathlib import Path

import pytest

# Test helpers (pyinfra_fixtures) live beside the tests; the repo root holds facts/ and operations/.
sys.path.insert(0, str(Path(__file__).parent))


def why_no_netns() -> str | None:
    """Why this machine cannot give a test a network namespace of its own, or None."""
    if os.geteuid() != 0:
        return "netns: needs root to create a network namespace (ip netns add)"
    if not shutil.which("ip"):
        return "netns: needs iproute2 (ip) to create a network namespace"
    return None


def pytest_runtest_setup(item):
    # Skipped with the reason, never silently: pytest -ra (the default here) lists each skip.
    if item.get_closest_marker("netns") and (reason := why_no_netns()):
        pytest.skip(reason)


@pytest.fixture
def netns():
    """A network namespace of the test's own, deleted afterwards (tests marked ``netns``)."""
    from netns_helpers import delete_netns, new_netns

    name = new_netns()
    yield name
    delete_netns(name)

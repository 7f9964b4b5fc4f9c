"""Network namespaces of a test's own, for the tests marked ``netns`` (root, iproute2): the
``netns`` fixture (tests/conftest.py) makes one, and :func:`in_ns` runs a shell command in it."""

from __future__ import annotations

import subprocess
import uuid


def new_netns() -> str:
    name = f"cilab-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    return name


def delete_netns(name: str) -> None:
    subprocess.run(["ip", "netns", "delete", name], check=True)


def in_ns(netns: str, command: str) -> str:
    """``command`` by ``sh -c`` in the namespace; its output, or CalledProcessError."""
    return subprocess.run(
        ["ip", "netns", "exec", netns, "sh", "-c", command],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

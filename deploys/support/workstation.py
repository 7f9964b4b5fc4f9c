"""
The workstation's own part of the preflight: the routes to the pod CIDRs change through sudo on
this machine (``host_routes_sudo``), so that sudo must work without a password, or the run
would stop at a prompt after the nodes changed.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from deploys.support import data


def sudo_problems(host) -> list[str]:
    """The routes to the pod CIDRs change through sudo on this machine: it must not prompt."""
    if (
        not data.value(host, "host_routes_sudo")
        or os.geteuid() == 0
        or not data.pod_routes(host.state.inventory)
    ):
        return []
    if not shutil.which("sudo"):
        return [
            "host_routes_sudo is set and sudo is not installed on this machine: install it, or run "
            "pyinfra as root with --data host_routes_sudo=False"
        ]
    if subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return []
    return [
        "host_routes_sudo is set and sudo asks for a password on this machine: allow it without one, "
        "or run pyinfra as root with --data host_routes_sudo=False"
    ]

"""
The chart repository the sim's workstation uses: a charts directory (``sim up --charts DIR``, one
with an ``index.yaml``, such as Cilium's own charts) served over HTTP on the sim's bridge, so
that ``helm repo add`` and ``helm install`` run for real; without one, the repository the group
data names (Cilium's official one), if this machine reaches it.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from pathlib import Path

from cilium_lab.sim import SimError, servers

PORT = 8879  # helm's traditional port for a local chart repository


def check_dir(directory: Path) -> None:
    """Before any change: the directory is a helm repository."""
    if not (directory / "index.yaml").is_file():
        raise SimError(
            f"--charts {directory} has no index.yaml: give a helm repository's directory "
            "(helm repo index DIR makes one), such as Cilium's charts in ../shared/charts"
        )


def reachable(url: str, timeout: float = 5) -> str | None:
    """None when ``url``'s index.yaml answers, else why not."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/index.yaml", timeout=timeout) as response:
            response.read(64)
        return None
    except (urllib.error.URLError, OSError, ValueError) as error:
        return str(getattr(error, "reason", error))


def check_official(url: str) -> None:
    why = reachable(url)
    if why is not None:
        raise SimError(
            f"no chart repository: no --charts DIR was given and {url} cannot be reached ({why}); "
            "give a directory of Cilium's charts with --charts DIR (make migrate uses ../shared/charts)"
        )


def serve(directory: Path, address: str, log: Path, port: int = PORT) -> tuple[int, str]:
    """Start serving ``directory``; return the server's pid and the repository's URL."""
    url = f"http://{address}:{port}/"
    args = [sys.executable, "-m", "http.server", str(port), "--bind", address]
    pid = servers.start(
        [*args, "--directory", str(directory)],
        log,
        f"the chart server at {url}",
        lambda: reachable(url, timeout=1),
    )
    return pid, url


def running(pid: int | None) -> bool:
    return b"http.server" in b" ".join(servers.command_line(pid) or [])


def stop(pid: int | None) -> None:
    servers.stop(pid, running)

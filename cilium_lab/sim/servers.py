"""The sim's small servers on the bridge (the chart repository, the image registry): started in a
session of their own with their output in a log, awaited until they answer, and stopped by pid
only while the pid is still theirs."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from cilium_lab.sim import SimError

START_TIMEOUT = 10.0  # seconds for a server to answer once started


def start(args: list[str], log: Path, what: str, answers: Callable[[], str | None]) -> int:
    """Run ``args`` as ``what`` (e.g. "the registry on 10.251.0.1:5000"); its pid once
    ``answers()`` returns None, which otherwise says why not. A server that exits or does not
    answer in time is one SimError naming ``what`` and the log."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    why = "not started"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SimError(f"{what} exited at once; see {log}")
        why = answers()
        if why is None:
            return proc.pid
        time.sleep(0.2)
    proc.kill()
    raise SimError(f"{what} did not answer: {why}; see {log}")


def command_line(pid: int | None) -> list[bytes] | None:
    """The process's arguments, or None when no such process runs."""
    if not pid:
        return None
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None


def stop(pid: int | None, is_ours: Callable[[int | None], bool]) -> None:
    """SIGTERM, then up to 5 s for it to go; nothing when ``pid`` is no longer the server."""
    if is_ours(pid):
        os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if not is_ours(pid):
                break
            time.sleep(0.1)

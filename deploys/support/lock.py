"""
One run at a time on a node: a lock that the run's own SSH connection holds.

Two runs that read a node before either changes it both decide from the same state, and the
second then works against what the first is changing (the second backup of a file the first
already stripped). So each run takes a node's lock before its first change there, and a run
that finds it taken stops before any change, naming the holder.

The lock is an ``flock`` on a file on the node, held by a process whose standard input is an
SSH channel of this run: when the run ends, however it ends (done, failed, killed), its
connection closes, the process reads end-of-file and exits, and the kernel drops the lock. A
killed run leaves no lock behind; the file keeps the last holder's name only as information.
Only an SSH session that outlives its client (a network cut) can keep a lock; the refusal names
the process to end on the node.

It takes no sudo: ``/run/lock`` is writable by every user on Debian and Ubuntu, and ``flock``
works on a file opened for reading too.
"""

from __future__ import annotations

import datetime
import getpass
import os
import socket

from facts.shell import script_command


def holder() -> str:
    """Who this run is, as another run will read it."""
    since = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    return f"{getpass.getuser()}@{socket.gethostname()} pid {os.getpid()} since {since}"


class NodeLocks:
    """The node locks one run holds: each an SSH channel of the run, kept open while the run
    lasts and closed with its connection."""

    def __init__(self):
        self._channels: list = []
        # The names of the nodes whose lock this run holds, or that have nothing to hold it with.
        self.held: set[str] = set()

    def take(self, host, path: str, me: str, timeout: float = 30) -> str | None:
        """Take the node's lock for the rest of this run; None when taken, else why not (one line)."""
        client = getattr(host.connector, "client", None)
        if client is None:
            # Not an SSH host (pyinfra's @local, a container connector): nothing to hold it with.
            self.held.add(host.name)
            return None
        channel = client.get_transport().open_session()
        channel.settimeout(timeout)
        channel.exec_command(script_command("deploys.support", "lock.sh", path, me))
        try:
            answer = channel.makefile("r").readline().strip()
        except TimeoutError:
            answer = "error the node did not answer"
        if answer == "locked":
            self._channels.append(channel)
            self.held.add(host.name)
            return None
        channel.close()
        kind, _, detail = answer.partition(" ")
        if kind == "busy":
            node_pid = detail.rpartition("node-pid ")[2] or "PID"
            return (
                f"another run is changing this node ({detail or 'holder unknown'}; lock {path}): wait for "
                f"it to end. If no run is going on, its SSH session outlived it: end that on the node "
                f"with `sudo kill {node_pid}`"
            )
        return f"cannot take the lock {path}: {detail or 'no answer'}"

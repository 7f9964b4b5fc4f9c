"""
Ctrl-C ends a run at once, non-zero, with one line saying what it may have left behind.

pyinfra's own SIGINT handler (``pyinfra_cli/main.py``, ``_handle_interrupt``) prints "Exiting upon
user request!" and calls ``sys.exit(0)``: an interrupted run exits 0, as if it had succeeded.
It also does not stop the run cleanly. Python runs the handler in whichever greenlet is running
when the signal arrives (an operation's output reader, paramiko's transport, gevent's hub), and
gevent passes the ``SystemExit`` on to the main greenlet. The operations still in flight keep
running. pyinfra's ``finally`` then disconnects through the same greenlet pool
(``pyinfra/api/connect.py``, ``disconnect_all``), which waits until those operations end. An
SSH command does not get the terminal's SIGINT, so the wait lasts until the command ends on the
node. Where exceptions are dropped, the interrupt is lost. In paramiko's transport thread (a
greenlet under gevent), the transport's loop dies and the operation waiting on it never ends.
In ``logging``'s at-fork callback, the logging lock stays taken and the next log line blocks
forever.

So the deploy files replace that handler when pyinfra loads them: after connecting, while it
prepares the run, before the first operation runs. The replacement does not raise, so no
greenlet and no cleanup can hold the process. It writes one line and ends the process with
``os._exit(130)`` (128 + SIGINT, the shell's convention). The kernel closes every SSH
connection, which releases the node locks (``deploys/support/lock.py``). Local commands are in
the terminal's process group and got the Ctrl-C themselves. Commands already running on a node
finish there, as they would with pyinfra's own handler. Every step of the deploy is safe to run
again.

A Ctrl-C before the deploy file makes this call (while pyinfra loads the inventory, connects, or
imports the deploy's modules) still goes to pyinfra's handler. The run exits 0 and sometimes
hangs, but no host has been changed yet. An inventory file can make the same call (with
``from pyinfra import state``) so that connecting is covered too.
"""

from __future__ import annotations

import os
import signal
import sys

import pyinfra
from pyinfra.api.state import StateStage

# What a shell reports for a process ended by SIGINT.
EXIT_INTERRUPTED = 128 + signal.SIGINT

MIGRATION_ADVICE = "hosts may be half-migrated; run the deploy again or deploys/rollback.py"


def exit_non_zero_on_interrupt(state, advice: str = MIGRATION_ADVICE) -> None:
    """Make Ctrl-C end this pyinfra run at once with exit status 130 and one line on stderr.

    Call this at the top of a deploy file (it runs once per host; only the first call installs
    the handler). ``advice`` says what an interrupted run may have left behind and what to do
    about it. It is printed only when operations had started; before that the line says no host
    was changed. This does nothing outside pyinfra's command line (pyinfra's API, tests that load
    a deploy in-process), so the caller keeps its own Ctrl-C handling.
    """
    if not pyinfra.is_cli or getattr(signal.getsignal(signal.SIGINT), "exits_non_zero", False):
        return

    def on_interrupt(signum, frame):
        line = f"interrupted: {advice}"
        try:
            if state.current_stage < StateStage.Execute:
                line = "interrupted before the first operation: no host was changed"
        except Exception:  # whatever happens here, the process must still end
            pass
        try:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:  # the signal may have come in the middle of a write to it
                    pass
            os.write(2, f"\n{line}\n".encode())
        finally:
            os._exit(EXIT_INTERRUPTED)

    on_interrupt.exits_non_zero = True
    signal.signal(signal.SIGINT, on_interrupt)

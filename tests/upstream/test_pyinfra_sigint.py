"""
Ctrl-C in pyinfra 3.10 (upstream), reproduced on ``@local`` without the lab and without SSH,
and our workaround, deploys/support/interrupt.py.

pyinfra_cli/main.py:33-35 handles SIGINT by printing "Exiting upon user request!" and calling
``sys.exit(0)``. The ``gevent.signal_handler(SIGINT, gevent.kill)`` at main.py:39 never runs,
because ``signal.signal`` at main.py:44 replaces it. Python runs the handler in whichever
greenlet is running when the signal arrives, and that gives three outcomes:

* gevent's hub, an operation's greenlet or an output reader: gevent throws the ``SystemExit``
  into the main greenlet (gevent/hub.py ``handle_system_error``). pyinfra exits 0 once its
  ``finally`` (pyinfra_cli/cli.py:299-303) has disconnected. ``disconnect_all``
  (pyinfra/api/connect.py:56) spawns on ``state.pool``, whose size is the number of hosts
  (pyinfra/api/state.py:225,242). The interrupted operations still hold the pool, so the exit
  waits for them. A command on a node does not get the terminal's SIGINT: the wait lasts as
  long as that command does. ``test_exit_waits_for_the_interrupted_command`` shows this with a
  local command that is not in pyinfra's process group.
* a thread: gevent's monkey-patching turns paramiko's Transport into a greenlet.
  ``threading`` drops a ``SystemExit`` raised in a thread (threading.py ``_bootstrap_inner`` and
  ``excepthook``), so the main greenlet never sees the interrupt. The transport's loop is gone
  without its cleanup (paramiko/transport.py:2301-2319). During connect, that host fails after a
  stall and the run goes on on the other hosts. During an operation, the operation waits
  forever on the dead channel: a hang until the next Ctrl-C, or gevent's ``LoopExit`` (exit 1)
  when no other host is left. ``test_interrupt_in_a_thread_is_lost`` shows that the signal is
  lost, deterministically, with a plain thread.
* code that drops exceptions, such as ``logging``'s at-fork callback after pyinfra forks a
  local command ("Exception ignored in: <function _releaseLock>"). The interrupt is lost, the
  logging lock stays taken, and the run blocks at its next log line. This happened in 1 of 80
  runs of ``deploys/cilium.py --limit local`` interrupted while preparing; the run ended in
  ``LoopExit`` with exit 1.

Measured on this machine (pyinfra 3.10.0, gevent 26.9.0, paramiko 4.0.0), SIGINT to the process
group as a terminal sends it. @local with a running ``sleep``: exit 0 in 20 of 20 runs, no hang.
The same with SIGINT to pyinfra's PID alone: a wait until the command ends in 18 of 20 runs (2
runs were interrupted before pyinfra installed its handler). Three SSH hosts (a throwaway
paramiko server on loopback), ten short operations: a hang after the message in 3 of 20 runs
with Ctrl-C while connecting, 1 of 20 while operations ran. None of our code runs while
connecting. With our TCP_NODELAY and preflight-style greenlets: 0 of 20 in prepare and 0 of 20
in execute, so ours adds nothing. One SSH host running a long command that prints a lot: 9 of 16
waited for the command, 7 of 16 ended in ``LoopExit``. With the workaround, every run
interrupted after the deploy file started exited 130 at once: 72 of 72 (20 in prepare, 20 in
execute, 16 + 16 with one SSH host). Ctrl-C while connecting still reaches pyinfra's handler
(1 hang in 30 runs interrupted at random times), unless the inventory file makes the same call
(20 of 20 exited 130).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.known_upstream

REPO = Path(__file__).resolve().parents[2]
PYINFRA = Path(sys.executable).parent / "pyinfra"
UPSTREAM_MESSAGE = "Exiting upon user request!"
WORKAROUND = (
    "from pyinfra import state\n"
    "from deploys.support.interrupt import exit_non_zero_on_interrupt\n"
    "exit_non_zero_on_interrupt(state)\n"
)
# Generous: a run that exits on its own does so within a second or two.
HANG_TIMEOUT = 30


class Run:
    """``pyinfra -y @local deploy.py`` in a process group of its own, its output in a file."""

    def __init__(self, tmp_path: Path, deploy: str, workaround: bool):
        self.marker = tmp_path / "started"
        self.after = tmp_path / "after-the-interrupt"
        self.log = tmp_path / "pyinfra.log"
        source = (WORKAROUND if workaround else "") + deploy.format(
            marker=self.marker, after=self.after
        )
        (tmp_path / "deploy.py").write_text(source)
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(PYINFRA), "-y", "@local", str(tmp_path / "deploy.py")],
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, done, what: str) -> None:
        deadline = time.monotonic() + HANG_TIMEOUT
        while not done():
            assert self.proc.poll() is None, f"pyinfra ended before {what}:\n{self.output()}"
            assert time.monotonic() < deadline, (
                f"no {what} after {HANG_TIMEOUT} s:\n{self.output()}"
            )
            time.sleep(0.05)

    def started(self) -> None:
        """Wait until the deploy's command (or thread) runs: the marker file has its content."""
        self.wait_for(lambda: self.marker.exists() and self.marker.read_text().strip(), "start")

    def interrupt(self, group: bool) -> None:
        """SIGINT to the process group (a terminal's Ctrl-C) or to pyinfra alone."""
        (os.killpg if group else os.kill)(self.proc.pid, signal.SIGINT)

    def exit_status(self) -> int:
        try:
            return self.proc.wait(timeout=HANG_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"pyinfra hung after SIGINT ({HANG_TIMEOUT} s):\n{self.output()}")

    def stop(self) -> None:
        """Kill what is left: pyinfra and the deploy's ``sleep`` share the process group."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


# One long command: the marker gets its PID (``exec`` keeps the shell's PID).
LONG_COMMAND = (
    "from pyinfra.operations import server\n"
    "server.shell(name='a long command', commands=['echo $$ > {marker}; exec sleep 60'])\n"
)

# A thread busy in Python code while pyinfra loads the deploy file, like paramiko's transport
# thread while it works: the signal is handled in that thread. Then one operation.
BUSY_THREAD = (
    "import threading, time\n"
    "from pyinfra.operations import server\n"
    "def busy():\n"
    "    with open('{marker}', 'w') as marker:\n"
    "        marker.write('busy')\n"
    "    deadline = time.monotonic() + 20\n"
    "    while time.monotonic() < deadline:\n"
    "        pass\n"
    "thread = threading.Thread(target=busy)\n"
    "thread.start()\n"
    "thread.join()\n"
    "server.shell(name='after the interrupt', commands=['touch {after}'])\n"
)


@pytest.fixture
def run(tmp_path):
    if not PYINFRA.exists():
        pytest.skip(f"no pyinfra beside {sys.executable}")
    runs = []

    def start(deploy: str, workaround: bool) -> Run:
        runs.append(Run(tmp_path, deploy, workaround))
        return runs[-1]

    yield start
    for each in runs:
        each.stop()


def test_ctrl_c_exits_0(run):
    """Upstream: Ctrl-C during an operation, and pyinfra exits 0 as if the run had succeeded."""
    pyinfra = run(LONG_COMMAND, workaround=False)
    pyinfra.started()
    pyinfra.interrupt(group=True)
    assert pyinfra.exit_status() == 0
    assert UPSTREAM_MESSAGE in pyinfra.output()


def test_exit_waits_for_the_interrupted_command(run):
    """Upstream: after the message, pyinfra waits for the interrupted command to end.

    The command runs on, like a command on a node, which the terminal's Ctrl-C does not reach.
    pyinfra has printed that it is disconnecting and still runs. It ends only when the command
    does."""
    pyinfra = run(LONG_COMMAND, workaround=False)
    pyinfra.started()
    pyinfra.interrupt(group=False)
    pyinfra.wait_for(lambda: "Disconnecting from hosts" in pyinfra.output(), "disconnect")
    with pytest.raises(subprocess.TimeoutExpired):
        pyinfra.proc.wait(timeout=2)
    os.kill(int(pyinfra.marker.read_text()), signal.SIGTERM)
    assert pyinfra.exit_status() == 0
    assert UPSTREAM_MESSAGE in pyinfra.output()


def test_interrupt_in_a_thread_is_lost(run):
    """Upstream: a SIGINT handled in a thread (a greenlet under gevent) is dropped.

    The message is printed, and then the run goes on and runs its operation."""
    pyinfra = run(BUSY_THREAD, workaround=False)
    pyinfra.started()
    pyinfra.interrupt(group=False)
    assert pyinfra.exit_status() == 0
    assert UPSTREAM_MESSAGE in pyinfra.output()
    assert pyinfra.after.exists(), "the operation after the interrupt did not run"


@pytest.mark.parametrize("group", [True, False], ids=["ctrl-c", "pid-only"])
def test_workaround_exits_130_at_once(run, group):
    """The workaround: exit 130 with our line, without waiting for the command."""
    pyinfra = run(LONG_COMMAND, workaround=True)
    pyinfra.started()
    pyinfra.interrupt(group=group)
    assert pyinfra.exit_status() == 130
    output = pyinfra.output()
    assert (
        "interrupted: hosts may be half-migrated; run the deploy again or deploys/rollback.py"
        in output
    )
    assert UPSTREAM_MESSAGE not in output


def test_workaround_in_a_thread(run):
    """The workaround: the interrupt ends the run even when handled in a thread, before any change."""
    pyinfra = run(BUSY_THREAD, workaround=True)
    pyinfra.started()
    pyinfra.interrupt(group=False)
    assert pyinfra.exit_status() == 130
    assert "interrupted before the first operation: no host was changed" in pyinfra.output()
    assert not pyinfra.after.exists(), "the operation after the interrupt ran"

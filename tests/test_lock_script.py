"""The node lock's script (deploys/support/lock.sh), run with sh and flock on this machine: the
same words NodeLocks sends over its SSH channel, with a pipe as the channel."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

from facts.shell import script_argv

pytestmark = pytest.mark.skipif(not shutil.which("flock"), reason="needs flock (util-linux)")


def _take(path, who):
    process = subprocess.Popen(
        script_argv("deploys.support", "lock.sh", path, who),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    return process, process.stdout.readline().strip()


def test_second_holder_is_refused_with_the_first_ones_name_until_it_ends(tmp_path):
    path = tmp_path / "cilium-lab.lock"
    first, answer = _take(path, "alice@ws pid 1")
    assert answer == "locked"
    try:
        second, refused = _take(path, "bob@ws pid 2")
        second.wait(timeout=10)
        assert refused.startswith("busy alice@ws pid 1, node-pid "), refused
        node_pid = int(refused.rpartition("node-pid ")[2])
        # The pid named is the process that holds the lock: the one to kill on the node.
        assert node_pid == first.pid
    finally:
        # The run's connection closes: the holder reads end-of-file and the kernel drops the lock.
        first.stdin.close()
        first.wait(timeout=10)
    third, answer = _take(path, "bob@ws pid 2")
    assert answer == "locked"
    third.stdin.close()
    third.wait(timeout=10)
    assert path.read_text() == f"bob@ws pid 2, node-pid {third.pid}\n"


def test_a_lock_file_it_cannot_open_is_an_error_line(tmp_path):
    process, answer = _take(tmp_path / "missing" / "cilium-lab.lock", "alice")
    process.wait(timeout=10)
    assert answer == f"error cannot open {tmp_path}/missing/cilium-lab.lock"


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to run as another user"
)
def test_a_lock_file_another_user_owns_is_locked_read_only():
    """/run/lock is writable by all, and the last holder's file stays, owned by that user: the
    next user cannot open it for writing, and takes the lock on it opened for reading."""
    # Not under pytest's tmp_path, which only root may enter.
    directory = pathlib.Path(tempfile.mkdtemp(prefix="cilium-lab-lock-"))
    directory.chmod(0o755)
    path = directory / "cilium-lab.lock"
    path.write_text("root@ws pid 1, node-pid 1\n")
    path.chmod(0o444)
    process = subprocess.Popen(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        + script_argv("deploys.support", "lock.sh", path, "nobody@ws pid 3"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline().strip() == "locked"
        _, refused = _take(path, "root@ws pid 4")
        assert refused == "busy root@ws pid 1, node-pid 1"
    finally:
        process.stdin.close()
        process.wait(timeout=10)
        shutil.rmtree(directory)

"""The sim's small servers (cilium_lab/sim/servers.py), with real processes on loopback."""

from __future__ import annotations

import os
import socket
import sys
import urllib.request

import pytest

from cilium_lab.sim import SimError, servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str):
    def check() -> str | None:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return None
        except OSError as error:
            return str(error)

    return check


def is_http_server(pid) -> bool:
    return b"http.server" in b" ".join(servers.command_line(pid) or [])


def test_a_server_is_started_awaited_and_stopped(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    args = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    pid = servers.start([*args, "--directory", str(tmp_path)], tmp_path / "log", "it", answers(url))
    try:
        assert answers(url)() is None
        assert is_http_server(pid)
    finally:
        servers.stop(pid, is_http_server)
    assert servers.command_line(pid) is None or not is_http_server(pid)


def test_a_server_that_exits_at_once_is_one_line_naming_it_and_its_log(tmp_path):
    log = tmp_path / "log"
    with pytest.raises(SimError, match=rf"^the thing exited at once; see {log}$"):
        servers.start([sys.executable, "-c", "raise SystemExit(3)"], log, "the thing", lambda: "no")


def test_a_server_that_never_answers_is_killed_and_named(tmp_path, monkeypatch):
    monkeypatch.setattr(servers, "START_TIMEOUT", 0.5)
    log = tmp_path / "log"
    with pytest.raises(SimError, match=r"^the thing did not answer: refused; see "):
        servers.start(
            [sys.executable, "-c", "import time; time.sleep(30)"],
            log,
            "the thing",
            lambda: "refused",
        )


def test_stop_leaves_a_pid_that_is_not_the_servers_alone():
    servers.stop(os.getpid(), lambda pid: False)
    servers.stop(None, is_http_server)

"""What the deploy's cluster read (``python -m cilium_lab status``) costs: it runs once per run,
before any node changes, so it imports only the cluster commands and asks helm for its
repositories once."""

from __future__ import annotations

import subprocess
import sys
import threading

from cilium_lab.cluster import helm


def test_the_status_command_imports_neither_the_sim_nor_the_connectivity_check():
    probe = (
        "import runpy, sys\n"
        "sys.argv = ['cilium_lab', 'status', '--help']\n"
        "try:\n"
        "    runpy.run_module('cilium_lab', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('cilium_lab.sim')\n"
        "             or m == 'cilium_lab.cluster.connectivity'))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_help_still_lists_every_command():
    from click.testing import CliRunner

    from cilium_lab.cli import cli

    listed = CliRunner().invoke(cli, ["--help"]).output
    for name in ("sim", "verify", "restart-pods", "status", "connectivity"):
        assert f"  {name} " in listed


def test_one_helm_repo_list_for_the_repository_check_and_the_chart_source(monkeypatch):
    calls = []

    def fake_run(helm_path, args, input=None):
        calls.append(args[:2])
        out = (
            '[{"name": "cilium", "url": "http://charts.example/"}]'
            if args[:2]
            == [
                "repo",
                "list",
            ]
            else "[]"
        )
        return subprocess.CompletedProcess(args, 0, out, "")

    monkeypatch.setattr(helm, "run", fake_run)
    known = helm.Repositories()
    threads = [
        threading.Thread(
            target=helm.repository,
            args=("helm", "cilium", "http://charts.example/", "cilium/cilium", "1.19.6", known),
        ),
        threading.Thread(
            target=helm.chart_source,
            args=("helm", "cilium/cilium", "cilium", "http://charts.example/", known),
        ),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls.count(["repo", "list"]) == 1
    # The same answer as without the shared list.
    assert helm.chart_source(
        "helm", "cilium/cilium", "cilium", "http://charts.example/", known
    ) == ["cilium/cilium"]
    assert helm.chart_source("helm", "cilium/cilium", "cilium", "http://other.example/", known) == [
        "cilium",
        "--repo",
        "http://other.example/",
    ]

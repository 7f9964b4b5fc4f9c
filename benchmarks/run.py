"""
Benchmark of the deploy on the simulated lab.

Run it as root from the repository root, after ``make venv`` (and helm: ``make test`` installs it):

    .venv/bin/python benchmarks/run.py                       # 6, 12 and 24 nodes, 5 runs each
    .venv/bin/python benchmarks/run.py --nodes 6 --runs 3    # a quick look
    .venv/bin/python benchmarks/run.py --only real --real-nodes 3   # the real lab alone, 3 nodes

The node rows run on nodes alone (``sim up --no-control-plane``: the node phase). The chapter
rows run the whole chapter on 6 nodes with the sim's control plane and Cilium's charts
(``--charts``, default ``../shared/charts``): the node phase and the workstation's cluster phase.

It boots a sim of its own (home in a temporary directory, bridge ``cilbench0``, a /24 in
10.253.0.0/16 that no interface uses), so a user's sim and the test suite's sim keep running, and
always takes it down at the end, on Ctrl-C too. For each node count it measures, with
``deploys/cilium.py`` run by pyinfra's CLI as a user runs it:

- first run: ``pyinfra -y`` on freshly booted, unmigrated nodes (``sim down`` + ``sim up`` before
  each sample; only the pyinfra process is timed);
- re-run: ``pyinfra -y`` on converged nodes (nothing to change);
- dry: ``pyinfra --dry`` on converged nodes (without ``-y``, which would skip change detection;
  ``--dry`` exits before pyinfra's confirmation prompt);

each as the wall time of the pyinfra process (median, min and max of ``--runs`` samples) and its
peak RSS, plus the remote commands per host, counted in an extra untimed ``--debug`` run of each
kind from pyinfra's own "Running command on HOST" lines and checked against the ``sudo`` entries
in each node's journal. ``pyinfra --version`` is timed as the floor.

Two more parts (``--only rows,real,ratios`` picks; the parts not run keep their earlier results
in results.json):

- ratios (issue 18): on one converged kwok lab of 6 nodes with its control plane, the no-change
  re-run of the whole chapter against pyinfra's floor on the same 7 hosts (``pyinfra -y INVENTORY
  fact server.Hostname``: connect plus one fact), and the nodes-only re-run (``--limit control
  --limit workers``) against the same floor on those 6; A and B alternate (``--pairs`` pairs) and
  the ratio is taken pair by pair;
- real (issue 16): one lab of ``--real-nodes`` (default 6) on the real data plane. The memory at
  rest after ``sim up`` and after the migration (PSS of the lab's processes), the wall time of
  ``cilium-lab sim connectivity`` (the first, which pulls its image, then with the image on the
  nodes) before and after the migration, the network outage during the migration (a bare pod's
  ``agnhost connect`` to the guide's nginx ClusterIP, exec'd every 0.5 s: see OutageClient), and
  the Makefile's ``make migrate`` steps with the benchmark's sim, then a second time. The other
  labs on this machine may hold the guide's pod CIDR routes: pod traffic in from this lab's
  bridge then goes by a routing table of the lab's own (as tests/e2e/real_lab.py does).

It writes ``benchmarks/results.json`` and ``benchmarks/results.md``, prints the table and the
issue's targets (PASS/FAIL), and exits 0 unless a run failed (1: its log is shown) or it was
interrupted (130). Timings are never asserted: the machine's load (the load average before each
part is recorded) moves them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import figures

try:
    # The simulated lab's driver, shared with the end-to-end tests (tests/e2e).
    from cilium_lab.sim import SimError, images
    from cilium_lab.sim.harness import (
        BENCH_SUBNETS,
        CILIUM_LAB,
        DEFAULT_CHARTS,
        PYINFRA,
        REPO,
        SimLab,
        free_subnet,
    )
    from cilium_lab.sim.nodes import CGROUP_PARENT
except ModuleNotFoundError as e:  # not the venv's Python: the package is installed there
    sys.exit(f"{e}: run make venv, then this script with .venv/bin/python")

BRIDGE = "cilbench0"

RUN_KINDS = {
    "first": ["-y"],
    "re-run": ["-y"],
    "dry": ["--dry"],
}
COMMAND_LINE = re.compile(r"Running command on (\S+?): ")
GRAND_TOTAL = re.compile(r"Grand total\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)")

TARGET_RERUN_SECONDS = 1.5
TARGET_SCALING = 2.0
TARGET_COMMANDS = 6
TARGET_CHAPTER_RERUN_SECONDS = 1.3
TARGET_CLUSTER_INTERPRETERS = 1
CHAPTER_NODES = 6
# The cluster facts run the package's CLI with the venv's Python: one line per interpreter.
CLUSTER_FACT = re.compile(r"-m cilium_lab status")


class RunFailed(Exception):
    def __init__(self, what: str, log: Path):
        super().__init__(what)
        self.log = log


def log(line: str) -> None:
    print(line, flush=True)


# The machine.


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    mem_kib = int(
        re.search(r"^MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text(), re.M).group(1)
    )

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()

    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model.group(1).strip() if model else platform.processor() or platform.machine(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        # The deploy in the working tree is what ran; "dirty" says it differs from the commit.
        "commit": git("rev-parse", "--short", "HEAD")
        + (" (dirty)" if git("status", "--porcelain", "-uno") else ""),
        # Anything else running (another sim, the test suite) would skew the numbers: this shows it.
        # (Not the load average: booting 24 nodes alone drives it past 20.)
        "busy_cores_before": round(busy_cores(), 2),
        # The other sessions on this machine (their labs, their test suites): 1, 5, 15 minutes.
        "loadavg": loadavg(),
    }


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def busy_seconds() -> float:
    """CPU time this machine has spent busy, all cores, the sim's nodes included."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def busy_cores(seconds: float = 1.0) -> float:
    before = busy_seconds()
    time.sleep(seconds)
    return (busy_seconds() - before) / seconds


# Processes.


def timed(cmd: list[str], log_path: Path, env: dict | None = None) -> dict:
    """Run a command to completion: wall seconds, peak RSS (KiB), CPU seconds and exit code."""
    with open(log_path, "wb") as out:
        busy = busy_seconds()
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env
        )
        try:
            # wait4, not Popen.wait: it hands back the child's own rusage (ru_maxrss in KiB on Linux).
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        seconds = time.perf_counter() - start
        busy = busy_seconds() - busy
    # Reaped here already: Popen must not wait for it again.
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "seconds": seconds,
        "rss_kib": usage.ru_maxrss,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        # The nodes run on this machine: their sshd and sudo show here, beside pyinfra's own CPU.
        "machine_cpu_s": busy,
        "returncode": proc.returncode,
    }


def columns(results: list[dict]) -> dict:
    """One row's samples and their summary."""
    seconds = [r["seconds"] for r in results]
    return {
        "seconds": [round(s, 4) for s in seconds],
        **{k: round(v, 4) for k, v in summary(seconds).items()},
        "peak_rss_kib": [r["rss_kib"] for r in results],
        "cpu_s": [round(r["cpu_s"], 3) for r in results],
        "machine_cpu_s": [round(r["machine_cpu_s"], 2) for r in results],
    }


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


class BenchSim(SimLab):
    """The benchmark's own sim: each step's output goes to a log, and a failed step raises RunFailed."""

    # Its own routing tables (SimLab.own_pod_routes) never share a number with the tests' labs.
    own_table_base = 21000

    def __init__(self, home: Path, subnet: str, charts: Path | None = None):
        # helm's repositories and cache: the benchmark's own, beside the sim's home.
        super().__init__(home, BRIDGE, subnet, helm_home=home.parent)
        self.charts = charts

    def logged(
        self, log_path: Path, step: Callable[..., subprocess.CompletedProcess], *args
    ) -> None:
        """``step`` (up or down) with its output appended to ``log_path``; shielded: Ctrl-C here
        waits for it to finish (see SimLab.run_cli)."""
        with open(log_path, "ab") as out:
            proc = step(
                *args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, shield=True
            )
        if proc.returncode != 0:
            raise RunFailed(f"cilium-lab sim {' '.join(proc.args[2:])} failed", log_path)

    def boot(
        self, count: int, log_path: Path, chapter: bool = False, data_plane: str = "kwok"
    ) -> float:
        """A fresh sim of ``count`` nodes (down first if one is up): the seconds `sim up` took."""
        if self.is_up:
            self.logged(log_path, self.down)
        self.home.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        self.logged(
            log_path,
            self.up,
            count,
            self.charts if chapter or data_plane == "real" else None,
            data_plane,
        )
        return time.monotonic() - start

    def pyinfra(self, kind: str, log_path: Path, debug: bool = False) -> dict:
        cmd = self.pyinfra_command(*RUN_KINDS[kind], *(["--debug"] if debug else []))
        result = timed(cmd, log_path, self.env)
        if result["returncode"] != 0:
            raise RunFailed(f"{' '.join(cmd)} exited {result['returncode']}", log_path)
        return result

    # The nodes' own view: every command of the deploy runs through sudo, which logs it.

    def sudo_commands(self, leaders: dict[str, int]) -> dict[str, int]:
        """Commands sudo has logged on each node since it booted."""
        counts = {}
        for node, leader in leaders.items():
            # --sync: journald has stored what sudo sent it before we count. The whole journal, not
            # --after-cursor: the nodes' journald puts some of sudo's entries in user-1000.journal,
            # and a cursor taken in system.journal before the run missed them.
            out = self.nsenter(leader, "journalctl --sync; journalctl -q _COMM=sudo -o cat").stdout
            counts[node] = sum(
                1 for line in out.splitlines() if " : " in line and "COMMAND=" in line
            )
        return counts


def commands_per_host(log_text: str, hosts: list[str]) -> dict[str, int]:
    """Remote commands per node (the workstation's local ones are counted apart)."""
    counts = dict.fromkeys(hosts, 0)
    for match in COMMAND_LINE.finditer(log_text):
        if match.group(1) in counts:
            counts[match.group(1)] += 1
    return counts


def changed_operations(log_text: str) -> int | None:
    """Host-operations pyinfra reports as changed ("Success" in its results table)."""
    match = GRAND_TOTAL.search(log_text)
    if not match:
        return None
    success = match.group(2)
    return 0 if success == "-" else int(success)


# The benchmark.


def count_commands(sim: BenchSim, count: int, logs: Path, chapter: bool = False) -> dict[str, dict]:
    """One untimed --debug run of each kind on a fresh sim, in order: first, re-run, dry."""
    label = f"[{count} nodes{' chapter' if chapter else ''}]"
    sim.boot(count, logs / f"sim-{count}.log", chapter)
    leaders = sim.leaders()
    hosts = list(leaders)
    counted = {}
    for kind in RUN_KINDS:
        log_path = logs / f"{count}-{kind}-debug.log"
        before = sim.sudo_commands(leaders)
        sim.pyinfra(kind, log_path, debug=True)
        ours = commands_per_host(log_path.read_text(errors="replace"), hosts)
        theirs = {node: n - before[node] for node, n in sim.sudo_commands(leaders).items()}
        if theirs != ours:
            # Once (12 nodes) one node's journal showed one entry fewer: look again before
            # reporting a disagreement.
            time.sleep(2)
            theirs = {node: n - before[node] for node, n in sim.sudo_commands(leaders).items()}
        counted[kind] = {
            "commands_per_host": ours,
            "node_view": theirs,
            "node_view_agrees": ours == theirs,
        }
        per_host = sorted(set(ours.values()))
        extra = ""
        if chapter:
            text = log_path.read_text(errors="replace")
            counted[kind]["cluster_interpreters"] = len(CLUSTER_FACT.findall(text))
            extra = (
                f", {counted[kind]['cluster_interpreters']} Python(s) started for the cluster facts"
            )
        log(
            f"{label} {kind}: {'-'.join(map(str, per_host))} commands/host{extra}"
            + ("" if ours == theirs else f" (the nodes' journals say {theirs})")
        )
    return counted


def bench_nodes(
    sim: BenchSim, count: int, runs: int, logs: Path, chapter: bool = False
) -> list[dict]:
    label = f"[{count} nodes{' chapter' if chapter else ''}]"
    counted = count_commands(sim, count, logs, chapter)
    samples: dict[str, list[dict]] = {kind: [] for kind in RUN_KINDS}
    sim_up_seconds = []

    def sample(kind: str, i: int) -> None:
        log_path = logs / f"{count}-{kind}-{i}.log"
        result = sim.pyinfra(kind, log_path)
        if kind != "dry":
            result["changed"] = changed_operations(log_path.read_text(errors="replace"))
        samples[kind].append(result)
        log(f"{label} {kind} {i}/{runs}: {result['seconds']:.2f} s")

    for i in range(1, runs + 1):
        # Only a fresh sim is unmigrated: down + up each time, outside the timed part.
        sim_up_seconds.append(sim.boot(count, logs / f"sim-{count}.log", chapter))
        sample("first", i)
    for kind in ("re-run", "dry"):
        for i in range(1, runs + 1):
            sample(kind, i)

    rows = []
    for kind, results in samples.items():
        run = f"{kind} (chapter)" if chapter else kind
        row = {"nodes": count, "run": run, "chapter": chapter, **columns(results), **counted[kind]}
        if kind != "dry":
            row["changed_operations"] = [r["changed"] for r in results]
        if kind == "first":
            row["sim_up_seconds"] = [round(s, 2) for s in sim_up_seconds]
        rows.append(row)
    return rows


def floor(runs: int, logs: Path) -> tuple[dict, str]:
    results = []
    for _ in range(runs):
        result = timed([str(PYINFRA), "--version"], logs / "version.log")
        if result["returncode"] != 0:
            raise RunFailed("pyinfra --version failed", logs / "version.log")
        results.append(result)
    version = (logs / "version.log").read_text().strip().split()[-1]
    row = {"nodes": None, "run": "pyinfra --version", **columns(results)}
    log(f"[floor] pyinfra --version: median {row['median']:.2f} s")
    return row, version


# The real data plane (issue 16's Speed): a lab whose kubelets, containerd and kube-proxy are real.

REAL_TIMEOUT = 900
OUTAGE_NAMESPACE = "cilium-lab-bench"
OUTAGE_POD = "outage-client"
# One attempt every OUTAGE_PERIOD seconds (or right after the last one, when it took longer):
# the outage's figures are that fine (see figures.outage).
OUTAGE_PERIOD = 0.5
OUTAGE_EXEC_TIMEOUT = 4.0
OUTAGE_IN_FLIGHT = 4
# After the chapter, the client goes on until this many successes in a row (or the limit).
OUTAGE_SETTLED = 10
OUTAGE_AFTER_LIMIT = 120.0


class RealBench(BenchSim):
    """A real-data-plane lab: its connectivity, verify, memory and the own-routes stand-in."""

    def cli_step(self, name: str, args: list[str], logs: Path) -> dict:
        """``cilium-lab ARGS`` in the lab's environment, timed; RunFailed if it fails."""
        log_path = logs / f"{name}.log"
        result = timed([str(CILIUM_LAB), *args], log_path, self.env)
        if result["returncode"] != 0:
            raise RunFailed(f"cilium-lab {' '.join(args)} exited {result['returncode']}", log_path)
        return result

    def connectivity(self, name: str, logs: Path) -> dict:
        result = self.cli_step(name, ["sim", "connectivity", "-o", "json"], logs)
        text = (logs / f"{name}.log").read_text(errors="replace")
        # -o json: the report is the last JSON document in the log (progress goes to stderr).
        start = text.find("{")
        try:
            report = json.loads(text[start:]) if start >= 0 else {}
        except ValueError:
            report = {}
        result["checks"] = len(report.get("checks", []))
        result["passed"] = report.get("passed")
        return result

    def verify(self, name: str, logs: Path) -> dict:
        return self.cli_step(
            name, ["verify", "--no-wait", "--kubeconfig", str(self.cfg.kubeconfig)], logs
        )

    def chapter(self, name: str, logs: Path) -> dict:
        log_path = logs / f"{name}.log"
        cmd = self.pyinfra_command("-y")
        result = timed(cmd, log_path, self.env)
        if result["returncode"] != 0:
            raise RunFailed(f"{' '.join(cmd)} exited {result['returncode']}", log_path)
        result["changed"] = changed_operations(log_path.read_text(errors="replace"))
        return result

    # Memory.

    def pids(self) -> set[int]:
        """The lab's processes: everything in its nodes' cgroups (their systemd, kubelet,
        containerd, the pods, the control plane on control0), and the sim's own on the host
        (nspawn, the registry, the charts' server: their command lines name the lab's home or
        its bridge address)."""
        cfg = self.cfg
        pids: set[int] = set()
        for mount in Path("/proc/mounts").read_text().splitlines():
            _, where, fstype, options = mount.split()[:4]
            if fstype != "cgroup2" and "name=systemd" not in options.split(","):
                continue
            for node in cfg.nodes:
                top = Path(where) / CGROUP_PARENT / cfg.machine(node)
                for procs in top.rglob("cgroup.procs"):
                    try:
                        pids.update(int(p) for p in procs.read_text().split())
                    except OSError:
                        pass
        marks = (str(self.home), str(cfg.bridge_address))
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                args = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if any(mark in arg for arg in args for mark in marks):
                pids.add(int(proc.name))
        return pids

    def memory(self) -> dict:
        totals = {"Rss": 0, "Pss": 0, "Pss_Anon": 0}
        counted = 0
        for pid in self.pids():
            try:
                read = figures.smaps_kib(Path(f"/proc/{pid}/smaps_rollup").read_text())
            except (OSError, ValueError):
                continue  # gone meanwhile, or a kernel thread
            counted += 1
            for key in totals:
                totals[key] += read.get(key, 0)
        meminfo = Path("/proc/meminfo").read_text()
        return {
            "pss_mib": round(totals["Pss"] / 1024, 1),
            "pss_anon_mib": round(totals["Pss_Anon"] / 1024, 1),
            "rss_mib": round(totals["Rss"] / 1024, 1),
            "processes": counted,
            "mem_available_mib": round(figures.meminfo_kib(meminfo) / 1024, 1),
            "mem_total_mib": round(figures.meminfo_kib(meminfo, "MemTotal") / 1024, 1),
        }


def ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


class OutageClient:
    """Pod traffic to a Service during the migration, measured from inside a pod.

    A bare agnhost pod (bare pods are never restarted by the chapter: it names them) on one
    worker; the benchmark execs ``agnhost connect CLUSTER_IP:80 --timeout=1s`` in it through the
    API server's exec (the client's stream API), one attempt every OUTAGE_PERIOD seconds (beside
    those still running), each with its start and end on the monotonic clock. An exec that runs to an exit is a request
    that got through (0) or failed (non-zero); one that does not (the API server, the kubelet
    restarted by the node phase, containerd) is an exec failure, counted apart: it says nothing
    of pod traffic."""

    def __init__(self, kubeconfig: Path, image: str, node: str):
        from cilium_lab.cluster import kube
        from cilium_lab.cluster.connectivity import PodExec

        self.cluster = kube.load(str(kubeconfig))
        self.image = image
        self.node = node
        self.exec = PodExec(self.cluster, OUTAGE_NAMESPACE)
        self.attempts: list[figures.Attempt] = []
        self.origin = time.monotonic()
        self._stop = None
        self._thread = None

    def target(self) -> str:
        service = self.cluster.core.read_namespaced_service("nginx", "default")
        return f"{service.spec.cluster_ip}:{service.spec.ports[0].port}"

    def deploy(self, timeout: float = 120) -> None:
        core = self.cluster.core
        core.create_namespace({"metadata": {"name": OUTAGE_NAMESPACE}})
        core.create_namespaced_pod(
            OUTAGE_NAMESPACE,
            {
                "metadata": {"name": OUTAGE_POD},
                "spec": {
                    "nodeName": self.node,
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 1,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "containers": [{"name": "agnhost", "image": self.image, "args": ["pause"]}],
                },
            },
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pod = core.read_namespaced_pod(OUTAGE_POD, OUTAGE_NAMESPACE)
            if pod.status.phase == "Running":
                return
            time.sleep(1)
        raise TimeoutError(f"{OUTAGE_POD} not running after {timeout:g}s")

    def attempt(self, destination: str) -> figures.Attempt:
        start = time.monotonic() - self.origin
        code, said = self.exec.run(
            OUTAGE_POD,
            ["/agnhost", "connect", destination, "--timeout=1s"],
            timeout=OUTAGE_EXEC_TIMEOUT,
        )
        end = time.monotonic() - self.origin
        outcome = (
            figures.OK
            if code == 0
            else figures.EXEC_FAILED
            if code is None
            else figures.REQUEST_FAILED
        )
        return figures.Attempt(round(start, 3), round(end, 3), outcome, said[:200])

    def start(self) -> None:
        import threading

        destination = self.target()
        self._stop = threading.Event()
        # A new attempt every OUTAGE_PERIOD on a fixed schedule, beside those still running (a
        # failing one waits out its 1 s timeout, longer when the machine is loaded), so the
        # resolution stays OUTAGE_PERIOD while traffic is down; at most OUTAGE_IN_FLIGHT at once
        # (a tick is skipped when they are all busy).
        slots = threading.BoundedSemaphore(OUTAGE_IN_FLIGHT)

        def one() -> None:
            try:
                self.attempts.append(self.attempt(destination))
            finally:
                slots.release()

        def loop() -> None:
            workers = []
            tick = time.monotonic()
            while not self._stop.is_set():
                if slots.acquire(blocking=False):
                    worker = threading.Thread(target=one, daemon=True)
                    worker.start()
                    workers.append(worker)
                tick += OUTAGE_PERIOD
                self._stop.wait(max(0.0, tick - time.monotonic()))
            for worker in workers:
                worker.join(timeout=OUTAGE_EXEC_TIMEOUT + 5)

        self._thread = threading.Thread(target=loop, name="outage-client", daemon=True)
        self._thread.start()

    def now(self) -> float:
        return time.monotonic() - self.origin

    def settle(self) -> None:
        """Wait until OUTAGE_SETTLED successes in a row, or OUTAGE_AFTER_LIMIT seconds."""
        deadline = time.monotonic() + OUTAGE_AFTER_LIMIT
        while time.monotonic() < deadline:
            tail = self.attempts[-OUTAGE_SETTLED:]
            if len(tail) == OUTAGE_SETTLED and all(a.outcome == figures.OK for a in tail):
                return
            time.sleep(OUTAGE_PERIOD)

    def stop(self) -> list[figures.Attempt]:
        if self._thread:
            self._stop.set()
            self._thread.join(timeout=2 * OUTAGE_EXEC_TIMEOUT + 10)
        return list(self.attempts)

    def delete(self) -> None:
        try:
            self.cluster.core.delete_namespace(OUTAGE_NAMESPACE)
        except Exception:  # the lab goes down next anyway
            pass


def settle_memory(sim: RealBench, seconds: float = 20) -> dict:
    """The lab's memory at rest: after ``seconds`` of nothing."""
    time.sleep(seconds)
    return sim.memory()


def bench_real(sim: RealBench, count: int, logs: Path) -> dict:
    """The real lab's rows: memory at rest, connectivity, the outage, warm `make migrate` (its
    steps as the Makefile runs them, with the benchmark's sim), and a second one."""
    label = f"[real {count} nodes]"
    before = figures.meminfo_kib(Path("/proc/meminfo").read_text()) / 1024
    steps: dict[str, dict] = {}

    def step(name: str, result: dict) -> dict:
        steps[name] = result
        log(f"{label} {name}: {result['seconds']:.1f} s")
        return result

    start = time.monotonic()
    sim.home.mkdir(parents=True, exist_ok=True)
    up_log = logs / "real-up.log"
    sim.logged(up_log, sim.up, count, sim.charts, "real")
    step("sim up", {"seconds": time.monotonic() - start})
    sim.own_pod_routes()
    rest_before = settle_memory(sim)
    log(f"{label} memory at rest before the migration: {rest_before['pss_mib']:.0f} MiB PSS")
    # make migrate's first connectivity pulls the test image onto the nodes.
    step("connectivity (first, pulls the image)", sim.connectivity("real-conn-1", logs))
    step("connectivity before", sim.connectivity("real-conn-2", logs))

    client = OutageClient(sim.cfg.kubeconfig, images.image_ref(sim.cfg, "agnhost"), worker(sim))
    client.deploy()
    client.start()
    time.sleep(5)  # a baseline of successes before the chapter starts
    # The chapter deletes the workstation's routes to the pod CIDRs: the lab's own table too.
    sim.drop_own_pod_routes()
    chapter_from = client.now()
    step("chapter", sim.chapter("real-chapter-1", logs))
    chapter_to = client.now()
    client.settle()
    attempts = client.stop()
    client.delete()
    outage = figures.outage(attempts)
    outage.update(
        chapter_from_s=round(chapter_from, 3),
        chapter_to_s=round(chapter_to, 3),
        target=client.target(),
        node=client.node,
        samples=[a.__dict__ for a in attempts],
    )
    log(
        f"{label} outage: longest gap {outage['longest_gap_s']:.1f} s, request failed "
        f"{outage['request_failed_s']:.1f} s, exec failed {outage['exec_failed_s']:.1f} s"
    )
    step("verify", sim.verify("real-verify-1", logs))
    step("connectivity after", sim.connectivity("real-conn-3", logs))
    rest_after = settle_memory(sim)
    log(f"{label} memory at rest after the migration: {rest_after['pss_mib']:.0f} MiB PSS")

    # A second make migrate: nothing changes.
    again: dict[str, dict] = {}
    start = time.monotonic()
    sim.logged(up_log, sim.up, count, sim.charts, "real")
    again["sim up"] = {"seconds": time.monotonic() - start}
    again["connectivity before"] = sim.connectivity("real-conn-4", logs)
    again["chapter"] = sim.chapter("real-chapter-2", logs)
    again["verify"] = sim.verify("real-verify-2", logs)
    again["connectivity after"] = sim.connectivity("real-conn-5", logs)
    for name, result in again.items():
        log(f"{label} second make migrate, {name}: {result['seconds']:.1f} s")

    migrate = ["sim up", "connectivity (first, pulls the image)", "chapter", "verify"]
    warm = sum(steps[n]["seconds"] for n in migrate) + steps["connectivity after"]["seconds"]
    return {
        "nodes": count,
        "mem_available_before_up_mib": round(before, 1),
        "memory_before": rest_before,
        "memory_after": rest_after,
        "mem_available_drop_mib": round(before - rest_after["mem_available_mib"], 1),
        "steps": {n: strip(r) for n, r in steps.items()},
        "second_make_migrate": {n: strip(r) for n, r in again.items()},
        "warm_make_migrate_s": round(warm, 1),
        "second_make_migrate_s": round(sum(r["seconds"] for r in again.values()), 1),
        "second_chapter_changed": again["chapter"]["changed"],
        "outage": outage,
    }


def strip(result: dict) -> dict:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}


def worker(sim: RealBench) -> str:
    workers = [n for n in sim.cfg.nodes if not sim.cfg.is_control(n)]
    return (workers or sim.cfg.nodes)[-1]


# Issue 18's ratios: the no-change re-runs against pyinfra's floor on the same hosts.

NODE_GROUPS = ("control", "workers")


def bench_ratios(sim: BenchSim, pairs: int, logs: Path) -> list[dict]:
    """On one kwok lab of 6 nodes with its control plane: A (the no-change re-run) and B (its
    floor: ``pyinfra -y ... fact server.Hostname`` on the same hosts, connect plus one fact),
    alternating A B A B, the ratio taken pair by pair."""
    sim.boot(CHAPTER_NODES, logs / "ratios-sim.log", chapter=True)
    sim.pyinfra("first", logs / "ratios-converge.log")
    gd = ["--group-data", str(REPO / "inventories" / "group_data")]
    limit = [arg for group in NODE_GROUPS for arg in ("--limit", group)]
    fact = [str(PYINFRA), "-y", *gd, str(sim.inventory), "fact", "server.Hostname"]
    kinds = {
        "chapter": (sim.pyinfra_command("-y"), fact),
        "nodes only": (
            sim.pyinfra_command("-y", *limit),
            [*fact[:2], *limit, *fact[2:]],
        ),
    }
    rows = []
    for name, (a_cmd, b_cmd) in kinds.items():
        # One of each untimed first: the caches (helm's, the chart keys') as a re-run finds them.
        for cmd, tag in ((a_cmd, "a"), (b_cmd, "b")):
            checked(sim, cmd, logs / f"ratio-{name}-{tag}-warm.log")
        a_runs, b_runs, changed = [], [], []
        for i in range(pairs):
            a_log = logs / f"ratio-{name}-a-{i}.log"
            a = checked(sim, a_cmd, a_log)
            changed.append(changed_operations(a_log.read_text(errors="replace")))
            b = checked(sim, b_cmd, logs / f"ratio-{name}-b-{i}.log")
            a_runs.append(a)
            b_runs.append(b)
        row = {
            "run": name,
            "nodes": CHAPTER_NODES,
            "a": shown(a_cmd, sim),
            "b": shown(b_cmd, sim),
            **figures.pair_ratios([r["seconds"] for r in a_runs], [r["seconds"] for r in b_runs]),
            "a_cpu_median_s": round(statistics.median(r["cpu_s"] for r in a_runs), 3),
            "b_cpu_median_s": round(statistics.median(r["cpu_s"] for r in b_runs), 3),
            "a_changed_operations": changed,
        }
        log(
            f"[ratios] {name}: {row['ratio_median']:.2f}x "
            f"({row['a_median_s']:.2f} s / {row['b_median_s']:.2f} s, {pairs} pairs)"
        )
        rows.append(row)
    return rows


def shown(cmd: list[str], sim: BenchSim) -> str:
    """A command as the report shows it: the tool's name, paths relative to the repository, the
    lab's inventory as INVENTORY."""
    words = [Path(cmd[0]).name, *cmd[1:]]
    words = ["INVENTORY" if w == str(sim.inventory) else w for w in words]
    return " ".join(w.removeprefix(f"{REPO}/") for w in words)


def checked(sim: BenchSim, cmd: list[str], log_path: Path) -> dict:
    result = timed(cmd, log_path, sim.env)
    if result["returncode"] != 0:
        raise RunFailed(f"{' '.join(cmd)} exited {result['returncode']}", log_path)
    return result


# Verdicts and reports.


def find(rows: list[dict], nodes: int, run: str) -> dict | None:
    return next((r for r in rows if r["nodes"] == nodes and r["run"] == run), None)


def targets(rows: list[dict]) -> list[dict]:
    checks = []
    small, large = find(rows, 6, "re-run"), find(rows, 24, "re-run")
    checks.append(
        {
            "target": f"re-run on 6 nodes <= {TARGET_RERUN_SECONDS} s wall (median)",
            "value": f"{small['median']:.2f} s" if small else "not measured",
            "pass": small["median"] <= TARGET_RERUN_SECONDS if small else None,
        }
    )
    ratio = large["median"] / small["median"] if small and large else None
    checks.append(
        {
            "target": f"24-node re-run <= {TARGET_SCALING:g}x the 6-node re-run (medians)",
            "value": f"{ratio:.2f}x ({large['median']:.2f} s / {small['median']:.2f} s)"
            if ratio
            else "not measured",
            "pass": ratio <= TARGET_SCALING if ratio else None,
        }
    )
    chapter = find(rows, CHAPTER_NODES, "re-run (chapter)")
    checks.append(
        {
            "target": f"whole-chapter re-run on {CHAPTER_NODES} nodes, local included, <= {TARGET_CHAPTER_RERUN_SECONDS} s wall (median)",
            "value": f"{chapter['median']:.2f} s" if chapter else "not measured",
            "pass": chapter["median"] <= TARGET_CHAPTER_RERUN_SECONDS if chapter else None,
        }
    )
    checks.append(
        {
            "target": f"<= {TARGET_CLUSTER_INTERPRETERS} Python started for the cluster facts of a whole-chapter re-run",
            "value": str(chapter["cluster_interpreters"]) if chapter else "not measured",
            "pass": chapter["cluster_interpreters"] <= TARGET_CLUSTER_INTERPRETERS
            if chapter
            else None,
        }
    )
    reruns = [r for r in rows if r["run"].startswith("re-run")]
    if reruns:
        worst = max(max(r["commands_per_host"].values()) for r in reruns)
        # A re-run that changes something is not the no-change re-run the target is about.
        unchanged = all(c == 0 for r in reruns for c in r["changed_operations"])
        checks.append(
            {
                "target": f"<= {TARGET_COMMANDS} remote commands per host on a no-change re-run (preflight included)",
                "value": f"{worst} (max over hosts and node counts)"
                + ("" if unchanged else "; but a re-run changed something, see results.json"),
                "pass": worst <= TARGET_COMMANDS and unchanged,
            }
        )
    return checks


def verdict(check: dict) -> str:
    return {True: "PASS", False: "FAIL", None: "SKIP"}[check["pass"]]


def spread(counts: dict[str, int]) -> str:
    low, high = min(counts.values()), max(counts.values())
    return str(low) if low == high else f"{low}-{high}"


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Deploy benchmark on the simulated lab",
        "",
        f"`{report['command']}`; {report['runs']} samples per row, wall time of the pyinfra process.",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, kernel {m['kernel']}, "
        f"Python {m['python']}, pyinfra {m['pyinfra']}, commit {m['commit']}, {m['date']}; "
        f"{m['busy_cores_before']} cores busy before it started.",
        "",
        "| nodes | run | median s | min | max | commands/host | peak RSS MiB |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in [report["floor"], *report["results"]]:
        counts = spread(row["commands_per_host"]) if "commands_per_host" in row else "-"
        lines.append(
            f"| {row['nodes'] or '-'} | {row['run']} | {row['median']:.2f} | {row['min']:.2f} | {row['max']:.2f} "
            f"| {counts} | {max(row['peak_rss_kib']) / 1024:.1f} |"
        )
    lines += [
        "",
        "first: `pyinfra -y` on freshly booted, unmigrated nodes (`sim down` + `sim up` before each, not timed); "
        "re-run: `pyinfra -y` on converged nodes; dry: `pyinfra --dry` on converged nodes. "
        "The nodes share this machine's CPUs (see cpu_s and machine_cpu_s in results.json). "
        'Commands/host: pyinfra\'s `--debug` "Running command on" lines in one extra untimed run of each kind'
        + (
            ", matching the sudo entries in every node's journal."
            if report["node_view_agrees"]
            else "; the nodes' journals disagree somewhere, see results.json."
        ),
        "",
        "## Targets",
        "",
        *(f"- {verdict(c)}: {c['target']}: {c['value']}" for c in report["targets"]),
        "",
    ]
    return "\n".join(lines)


PARTS = ("rows", "real", "ratios")
TARGET_CHAPTER_RATIO = 1.5
TARGET_NODES_RATIO = 1.2
TARGET_CONNECTIVITY_SECONDS = 30
TARGET_WARM_MIGRATE_SECONDS = 180


def real_targets(real: dict) -> list[dict]:
    steps = real["steps"]
    return [
        {
            "target": f"connectivity on {real['nodes']} nodes (images on the nodes) <= "
            f"{TARGET_CONNECTIVITY_SECONDS} s, before and after the migration",
            "value": f"{steps['connectivity before']['seconds']:.1f} s / "
            f"{steps['connectivity after']['seconds']:.1f} s",
            "pass": max(
                steps["connectivity before"]["seconds"], steps["connectivity after"]["seconds"]
            )
            <= TARGET_CONNECTIVITY_SECONDS,
        },
        {
            "target": f"warm make migrate on the real lab ({real['nodes']} nodes) <= "
            f"{TARGET_WARM_MIGRATE_SECONDS} s",
            "value": f"{real['warm_make_migrate_s']:.0f} s",
            "pass": real["warm_make_migrate_s"] <= TARGET_WARM_MIGRATE_SECONDS,
        },
    ]


def ratio_targets(ratios: list[dict]) -> list[dict]:
    bounds = {"chapter": TARGET_CHAPTER_RATIO, "nodes only": TARGET_NODES_RATIO}
    return [
        {
            "target": f"no-change re-run ({row['run']}) <= {bounds[row['run']]:g}x pyinfra's floor "
            "on the same hosts (median of paired ratios)",
            "value": f"{row['ratio_median']:.2f}x ({row['a_median_s']:.2f} s / "
            f"{row['b_median_s']:.2f} s, {row['pairs']} pairs)",
            "pass": row["ratio_median"] <= bounds[row["run"]],
        }
        for row in ratios
    ]


def machine_line(m: dict, after: str | None = None) -> str:
    return (
        f"{m['nproc']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, kernel {m['kernel']}, "
        f"Python {m['python']}, commit {m['commit']}, {m['date']}; load average "
        f"{m.get('loadavg', '?')} and {m['busy_cores_before']} cores busy before it started"
    ) + (f", load average {after} after it" if after else "")


def mib(memory: dict, key: str) -> str:
    return f"{memory[key]:.0f} MiB" if key in memory else "not measured"


def real_markdown(real: dict) -> list[str]:
    o = real["outage"]
    before, after = real["memory_before"], real["memory_after"]
    steps, again = real["steps"], real["second_make_migrate"]
    return [
        "## The real data plane",
        "",
        f"`{real['command']}`: one real lab of {real['nodes']} nodes (real kubelets, containerd, "
        "kube-proxy and the bridge plugin; Cilium's real agents after the chapter). Machine: "
        f"{machine_line(real['machine'], real.get('loadavg_after'))}. Single samples: each step once.",
        "",
        "| what | value |",
        "|---|---:|",
        f"| memory at rest after `sim up`: PSS of the lab's processes (of it anonymous) | "
        f"{before['pss_mib']:.0f} MiB ({mib(before, 'pss_anon_mib')}) |",
        f"| memory at rest after the migration: PSS (of it anonymous) | "
        f"{after['pss_mib']:.0f} MiB ({mib(after, 'pss_anon_mib')}) |",
        f"| MemAvailable drop from before `sim up` to after the migration (whole machine) | "
        f"{real['mem_available_drop_mib']:.0f} MiB |",
        f"| connectivity, images on the nodes, before / after | "
        f"{steps['connectivity before']['seconds']:.1f} s / {steps['connectivity after']['seconds']:.1f} s |",
        f"| connectivity, first (pulls its image) | {steps['connectivity (first, pulls the image)']['seconds']:.1f} s |",
        f"| outage: longest gap between successes | {o['longest_gap_s']:.1f} s |",
        f"| outage: requests failed (total) / exec failed (total) | "
        f"{o['request_failed_s']:.1f} s / {o['exec_failed_s']:.1f} s |",
        f"| warm make migrate (sim up {steps['sim up']['seconds']:.0f} s, connectivity "
        f"{steps['connectivity (first, pulls the image)']['seconds']:.0f} s, chapter "
        f"{steps['chapter']['seconds']:.0f} s, verify {steps['verify']['seconds']:.0f} s, "
        f"connectivity {steps['connectivity after']['seconds']:.0f} s) | {real['warm_make_migrate_s']:.0f} s |",
        f"| second make migrate (chapter {again['chapter']['seconds']:.0f} s, "
        f"{real['second_chapter_changed']} operations changed) | {real['second_make_migrate_s']:.0f} s |",
        "",
        "Memory: the sum of the proportional set size (`Pss` of `/proc/PID/smaps_rollup`, shared "
        "pages split among their users) of the lab's processes: every process in its nodes' "
        "cgroups and the sim's own on the host (nspawn, registry, charts' server). The nodes' "
        "binaries come from one cache that the other labs on the machine share, so their "
        "file pages' share moves with how many labs are up; the anonymous part (`Pss_Anon`: "
        "heaps, stacks) does not. Kernel memory "
        "(eBPF maps, network namespaces, page cache) is not in it; the MemAvailable drop, which "
        "includes it, also moves with whatever else runs on the machine. At rest: 20 s after "
        f"the step. Headroom after the migration: MemTotal {after['mem_total_mib'] / 1024:.1f} GiB "
        f"- the lab's {after['pss_mib'] / 1024:.1f} GiB leaves "
        f"{(after['mem_total_mib'] - after['pss_mib']) / 1024:.1f} GiB; MemAvailable then was "
        f"{after['mem_available_mib'] / 1024:.1f} GiB with everything else on the machine running.",
        "",
        "Outage: a bare agnhost pod on "
        f"{o['node']} (the chapter never restarts bare pods) runs `agnhost connect {o['target']} "
        "--timeout=1s` (the guide's nginx Service's ClusterIP) through the API server's exec, one "
        f"attempt started every {OUTAGE_PERIOD:g} s, beside those still running (median interval "
        f"{o['median_interval_s']} s, longest {o.get('max_interval_s')} s: the resolution), from 5 s before the chapter until "
        f"{OUTAGE_SETTLED} successes in a row after it. An exec that runs to an exit is a request "
        "that got through or failed; one that does not (the kubelet restarted, the stream cut) "
        f"is an exec failure, counted apart. {o['attempts']} attempts: {o['counts']}; the chapter "
        f"ran from {o['chapter_from_s']:.1f} s to {o['chapter_to_s']:.1f} s, failures from "
        f"{o['down_from_s']} s to {o['down_to_s']} s; longest run of failed requests alone "
        f"{o['longest_request_failed_s']:.1f} s"
        + ("; the client never got through again." if o["never_recovered"] else "."),
        "",
        "Warm make migrate: the Makefile's steps (sim up, connectivity, the chapter, verify, "
        "connectivity) with the benchmark's sim and the node software cached; the outage client "
        "ran during its chapter. The second one repeats them on the migrated lab.",
        "",
        *(f"- {verdict(c)}: {c['target']}: {c['value']}" for c in real["targets"]),
        "",
    ]


def ratios_markdown(part: dict) -> list[str]:
    lines = [
        "## Re-run against pyinfra's floor (issue 18)",
        "",
        f"`{part['command']}`: one kwok lab of {CHAPTER_NODES} nodes with its control plane, "
        f"converged; A and B alternate, A B A B, the ratio taken pair by pair. Machine: "
        f"{machine_line(part['machine'], part.get('loadavg_after'))}.",
        "",
        "| run | A median s | B (floor) median s | ratio median | min | max | pairs | A CPU s | B CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in part["rows"]:
        lines.append(
            f"| {r['run']} | {r['a_median_s']:.2f} | {r['b_median_s']:.2f} | {r['ratio_median']:.2f} "
            f"| {r['ratio_min']:.2f} | {r['ratio_max']:.2f} | {r['pairs']} | {r['a_cpu_median_s']:.2f} "
            f"| {r['b_cpu_median_s']:.2f} |"
        )
    lines += ["", *(f"- A ({r['run']}): `{r['a']}`; B: `{r['b']}`" for r in part["rows"]), ""]
    lines += [*(f"- {verdict(c)}: {c['target']}: {c['value']}" for c in part["targets"]), ""]
    return lines


OUTAGE_CLIENT = "an attempt started every 0.5 s beside those running"


def real_summary(real: dict, client: str = OUTAGE_CLIENT) -> dict:
    """One real-lab run in a line of ``real_runs`` (without the outage's samples)."""
    steps, o = real["steps"], real["outage"]
    return {
        "client": client,
        "nodes": real["nodes"],
        "date": real["machine"]["date"],
        "loadavg_before": real["machine"]["loadavg"],
        "loadavg_after": real.get("loadavg_after"),
        "warm_make_migrate_s": real["warm_make_migrate_s"],
        "second_make_migrate_s": real["second_make_migrate_s"],
        "chapter_s": round(steps["chapter"]["seconds"], 1),
        "connectivity_before_s": round(steps["connectivity before"]["seconds"], 1),
        "connectivity_after_s": round(steps["connectivity after"]["seconds"], 1),
        "pss_before_mib": real["memory_before"]["pss_mib"],
        "pss_after_mib": real["memory_after"]["pss_mib"],
        **{
            k: o[k]
            for k in (
                "longest_gap_s",
                "request_failed_s",
                "exec_failed_s",
                "down_from_s",
                "down_to_s",
                "chapter_from_s",
                "chapter_to_s",
            )
        },
    }


def real_runs_markdown(runs: list[dict]) -> list[str]:
    """Every real-lab run kept in results.json's ``real_runs`` (one line each): single samples
    move with the machine's load, so the spread is part of the figure."""
    lines = [
        "### Every real-lab run kept",
        "",
        "| date | load before / after | warm make migrate s | chapter s | second s | connectivity "
        "before / after s | PSS before / after MiB | outage: longest gap s | requests failed s "
        "| exec failed s | client |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['date']} | {r['loadavg_before']} / {r.get('loadavg_after') or '?'} "
            f"| {r['warm_make_migrate_s']:.0f} "
            f"| {r['chapter_s']:.0f} | {r['second_make_migrate_s']:.0f} "
            f"| {r['connectivity_before_s']:.1f} / {r['connectivity_after_s']:.1f} "
            f"| {r['pss_before_mib']:.0f} / {r['pss_after_mib']:.0f} | {r['longest_gap_s']:.1f} "
            f"| {r['request_failed_s']:.1f} | {r['exec_failed_s']:.1f} | {r['client']} |"
        )
    return [*lines, ""]


def full_markdown(report: dict) -> str:
    text = markdown(report) if "results" in report else "# Deploy benchmark on the simulated lab\n"
    extra = []
    if "ratios" in report:
        extra += ratios_markdown(report["ratios"])
    if "real" in report:
        extra += real_markdown(report["real"])
    if report.get("real_runs"):
        extra += real_runs_markdown(report["real_runs"])
    return text + ("\n" + "\n".join(extra) if extra else "")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--nodes",
        default="6,12,24",
        help="node counts, comma-separated (default 6,12,24; none: the chapter rows only)",
    )
    parser.add_argument(
        "--runs", type=int, default=5, help="timed samples per node count and run (default 5)"
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks", help="where results.json and results.md go"
    )
    parser.add_argument(
        "--charts",
        type=Path,
        default=DEFAULT_CHARTS,
        help="Cilium's charts for the chapter rows (default ../shared/charts)",
    )
    parser.add_argument("--no-chapter", action="store_true", help="only the node rows")
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help="the parts to run, comma-separated: rows (the node and chapter rows), real (the real "
        "data plane: memory, connectivity, outage, make migrate), ratios (issue 18's re-run "
        "against pyinfra's floor); default all. The parts not run keep their earlier results.",
    )
    parser.add_argument(
        "--real-nodes",
        type=int,
        default=6,
        help="nodes of the real lab (default 6; 3 for a quick one)",
    )
    parser.add_argument("--pairs", type=int, default=7, help="A/B pairs for each ratio (default 7)")
    args = parser.parse_args()
    parts = [p for p in args.only.split(",") if p]
    if not parts or set(parts) - set(PARTS):
        parser.error(f"--only takes some of {', '.join(PARTS)}")
    counts = [] if args.nodes == "none" else [int(n) for n in args.nodes.split(",")]
    if args.pairs < 1 or not 1 <= args.real_nodes <= 12:
        parser.error("--pairs must be >= 1 and --real-nodes 1 to 12")
    if args.runs < 1 or any(not 1 <= n <= 250 for n in counts):
        parser.error("--runs must be >= 1 and node counts 1 to 250")
    if os.geteuid() != 0:
        parser.error("the sim needs root")
    for tool in (PYINFRA, CILIUM_LAB):
        if not tool.exists():
            parser.error(
                f"{tool} is missing: run make venv, then this script with .venv/bin/python"
            )
    if (Path("/sys/class/net") / BRIDGE).exists():
        parser.error(f"{BRIDGE} exists: another benchmark is running (or left it behind)")
    try:
        subnet = free_subnet(BENCH_SUBNETS)
    except SimError as e:
        parser.error(str(e))

    # SIGTERM takes the same way out as Ctrl-C: through the finally below.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    work = Path(tempfile.mkdtemp(prefix="cilium-lab-bench-"))
    logs = work / "logs"
    logs.mkdir()
    chapter = not args.no_chapter
    if (chapter or {"real", "ratios"} & set(parts)) and not (args.charts / "index.yaml").is_file():
        parser.error(f"no Cilium charts in {args.charts} (give --charts DIR, or --no-chapter)")
    # RealBench: the kwok rows use only what BenchSim has.
    sim = RealBench(work / "sim", subnet, args.charts.resolve())
    info = machine()
    rows = []
    measured: dict = {}
    status = 0
    try:
        floor_row, info["pyinfra"] = floor(args.runs, logs)
        if "rows" in parts:
            for count in counts:
                rows += bench_nodes(sim, count, args.runs, logs)
            if chapter:
                rows += bench_nodes(sim, CHAPTER_NODES, args.runs, logs, chapter=True)
        if "ratios" in parts:
            part_info = {**machine(), "pyinfra": info["pyinfra"]}
            ratio_rows = bench_ratios(sim, args.pairs, logs)
            measured["ratios"] = {
                "machine": part_info,
                "loadavg_after": loadavg(),
                "rows": ratio_rows,
                "targets": ratio_targets(ratio_rows),
            }
        if "real" in parts:
            if sim.is_up:
                sim.logged(logs / "sim-down.log", sim.down)
            part_info = {**machine(), "pyinfra": info["pyinfra"]}
            real = bench_real(sim, args.real_nodes, logs)
            real["machine"] = part_info
            real["loadavg_after"] = loadavg()
            real["targets"] = real_targets(real)
            measured["real"] = real
    except RunFailed as e:
        text = e.log.read_text(errors="replace").splitlines()
        log(f"\n{e}; the last lines of {e.log}:\n" + "\n".join(text[-40:]))
        status = 1
    except KeyboardInterrupt:
        log("\ninterrupted")
        status = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            if sim.cfg:
                sim.drop_own_pod_routes()
            if sim.is_up:
                log("taking the benchmark's sim down")
                sim.logged(logs / "sim-down.log", sim.down)
            shutil.rmtree(sim.home, ignore_errors=True)
        except RunFailed as e:
            log(
                f"{e}: see {e.log}; retry with: CILIUM_LAB_SIM_HOME={sim.home} {CILIUM_LAB} sim down"
            )
            status = status or 1
    if status == 1:
        log(f"logs kept in {logs}")
        return status
    shutil.rmtree(work, ignore_errors=True)
    if status:
        return status

    command = " ".join([".venv/bin/python", "benchmarks/run.py", *sys.argv[1:]])
    # The parts not run this time keep what the last run of them measured.
    previous = args.out / "results.json"
    report = json.loads(previous.read_text()) if previous.exists() else {}
    if "rows" in parts:
        report.update(
            {
                "command": command,
                "runs": args.runs,
                "settings": {"nodes": counts, "bridge": BRIDGE, "subnet": sim.subnet},
                "machine": info,
                "floor": floor_row,
                "results": rows,
                "node_view_agrees": all(r["node_view_agrees"] for r in rows),
                "targets": targets(rows),
            }
        )
    for name, part in measured.items():
        report[name] = {"command": command, **part}
    if "real" in measured:
        # Single samples move with the load: every run is kept in a line.
        report.setdefault("real_runs", []).append(real_summary(report["real"]))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    text = full_markdown(report)
    (args.out / "results.md").write_text(text)
    log("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

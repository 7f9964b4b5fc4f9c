"""
Helpers for the end-to-end tests: the sim's driver (cilium_lab.sim.harness) with what the tests
read and assert: pyinfra's JSON reports, node snapshots, the cluster, leftovers after `down`.

Node state is read from inside the nodes, never from the deploy's own reports.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# The tests import these paths from here too.
from cilium_lab.sim.harness import (
    BIN,
    CILIUM_LAB,
    DEFAULT_CHARTS,
    DEPLOY,
    GROUP_DATA,  # noqa: F401 (test_preflight_on_sim's)
    PYINFRA,
    REPO,
    SimLab,
)

ROLLBACK = REPO / "deploys" / "rollback.py"
CHARTS = Path(os.environ.get("CILIUM_LAB_CHARTS") or DEFAULT_CHARTS)

# What the migration may touch, hashed before and after each run.
TREES = (
    "/etc/cni/net.d",
    "/etc/modules-load.d",
    "/etc/modules",
    "/etc/systemd/system",
    "/var/backups",
)
UNITS = ("kube-proxy.service", "kubelet.service", "containerd.service")
CNI_DIR = "/etc/cni/net.d"
CNI_BACKUP = "/var/backups/cilium-lab/cni"
MODULES_BACKUP = "/var/backups/cilium-lab/modules-load.d"
CNI_SUFFIXES = (".conf", ".conflist", ".json")


def why_not_runnable() -> str | None:
    if not sys.platform.startswith("linux"):
        return f"e2e needs Linux (systemd-nspawn); this is {sys.platform}"
    if os.geteuid() != 0:
        return "e2e needs root (the sim mounts overlays, creates a bridge, boots containers); run as root, as .ci/run does"
    missing = [
        t
        for t in ("systemd-nspawn", "debootstrap", "ip", "nsenter", "ssh-keygen")
        if not shutil.which(t)
    ]
    if missing:
        return f"e2e needs {', '.join(missing)}: apt-get install systemd-container debootstrap iproute2 openssh-client"
    if not PYINFRA.exists() or not CILIUM_LAB.exists():
        return f"pyinfra or cilium-lab not installed in {BIN} (pip install -e '.[test]')"
    if not DEPLOY.exists():
        return f"no deploy at {DEPLOY}"
    return None


@dataclass
class Run:
    """One pyinfra run: its exit status, its JSON report (stdout) and its log (stderr)."""

    returncode: int
    report: dict | None
    log: str

    def plan(self) -> dict[str, set[str]]:
        """Operation name -> hosts pyinfra says it will change (what --dry reports), with those it
        will change if the operation's condition holds then (``_if``: the workstation's part did
        not fail)."""
        return {
            op["name"]: set(op["hosts_with_change"])
            | set(op.get("hosts_with_conditional_change", []))
            for op in self.report["plan"]
        }

    def changed(self) -> dict[str, set[str]]:
        """Operation name -> hosts on which it changed something (pyinfra's results)."""
        return {op["name"]: set(op["success"]) for op in self.report["results"]["operations"]}

    def unchanged(self) -> dict[str, set[str]]:
        return {op["name"]: set(op["no_change"]) for op in self.report["results"]["operations"]}

    def errors(self) -> dict[str, set[str]]:
        return {op["name"]: set(op["error"]) for op in self.report["results"]["operations"]}

    def hosts_changed(self) -> set[str]:
        return set().union(*self.changed().values()) if self.report["results"] else set()

    def hosts_planned(self) -> set[str]:
        return set().union(*self.plan().values())


class Sim(SimLab):
    """The session's sim (see conftest), with the tests' reads of it: a failing command fails the test."""

    # Seconds for one pyinfra run.
    pyinfra_timeout = 300

    def __init__(self, home: Path, bridge: str, subnet: str):
        super().__init__(home, bridge, subnet)
        # Every node as the sim booted it, taken once before any test runs (see conftest).
        self.pristine: dict[str, dict] = {}

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = self.run_cli(*args, capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"cilium-lab sim {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def sh(self, node: str, script: str, check: bool = True) -> str:
        leader = self.leader(node)
        assert leader, f"node {node} is not running"
        proc = self.nsenter(leader, script)
        if check and proc.returncode != 0:
            raise AssertionError(f"{node}: {script!r} failed ({proc.returncode}): {proc.stderr}")
        return proc.stdout

    def pyinfra(self, *args: str, deploy: Path = DEPLOY) -> Run:
        proc = self.run_pyinfra(
            "--json",
            *args,
            deploy=deploy,
            capture_output=True,
            text=True,
            timeout=self.pyinfra_timeout,
        )
        return Run(proc.returncode, _json_or_none(proc.stdout), proc.stderr)

    def pyinfra_interrupted(self, trigger: str) -> Run:
        """A real run, sent SIGINT (Ctrl-C) as soon as its log shows ``trigger``."""
        proc = subprocess.Popen(
            self.pyinfra_command("--json", "-y"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env=self.env,
        )
        log = []
        for line in proc.stderr:
            log.append(line)
            if trigger in line:
                proc.send_signal(signal.SIGINT)
                break
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            # pyinfra's own handler can hang here (tests/upstream/test_pyinfra_sigint.py); the
            # deploy replaces it, so a second Ctrl-C, which a user would press, marks a failure.
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
            err += "\n(a second SIGINT was needed)\n"
        return Run(proc.returncode, _json_or_none(out), "".join(log) + err)

    # What the nodes look like, from inside.

    def snapshot(self, node: str) -> dict:
        files = {}
        listing = self.sh(
            node,
            f"find {' '.join(TREES)} -printf '%y %m %p\\t%l\\n' 2>/dev/null; "
            f"find {' '.join(TREES)} -type f -exec sha256sum {{}} + 2>/dev/null; true",
        )
        for line in listing.splitlines():
            if "\t" in line:
                kind_mode, _, link = line.partition("\t")
                kind, mode, path = kind_mode.split(" ", 2)
                files[path] = {"type": kind, "mode": mode, "link": link}
            elif line.strip():
                digest, path = line.split("  ", 1)
                files[path]["sha256"] = digest
        texts = {
            path: self.cat(node, path)
            for path, entry in files.items()
            if entry["type"] == "f" and (path.startswith(("/etc/modules", CNI_DIR)))
        }
        return {
            "files": files,
            "texts": texts,
            "units": self.units(node),
            "iptables": self.iptables(node),
        }

    def snapshot_all(self) -> dict[str, dict]:
        return {node: self.snapshot(node) for node in self.nodes}

    def units(self, node: str) -> dict[str, dict[str, str]]:
        units = {}
        for unit in UNITS:
            out = self.sh(node, f"systemctl show -p ActiveState,UnitFileState,InvocationID {unit}")
            units[unit] = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        return units

    def iptables(self, node: str) -> list[str]:
        # Without the generation comments (they carry a time) and packet counters.
        out = self.sh(
            node, "iptables-save -t mangle; iptables-save -t nat; iptables-save -t filter"
        )
        return [line.split(" [", 1)[0] for line in out.splitlines() if not line.startswith("#")]

    def cat(self, node: str, path: str) -> str:
        return self.sh(node, f"cat '{path}'")

    # The cluster, through the sim's kubeconfig (the official client, as the deploy reads it).

    @property
    def cluster(self):
        from cilium_lab.cluster import kube

        return kube.load(str(self.cfg.kubeconfig))

    def helm_revisions(self) -> list[str]:
        secrets = self.cluster.core.list_namespaced_secret("kube-system").items
        return sorted(
            s.metadata.name
            for s in secrets
            if s.metadata.name.startswith("sh.helm.release.v1.cilium.")
        )

    def pods(self) -> dict[str, dict]:
        """namespace/name -> uid, node, IP, start, of the pods not being deleted."""
        return {
            f"{p.metadata.namespace}/{p.metadata.name}": {
                "uid": p.metadata.uid,
                "node": p.spec.node_name,
                "ip": p.status.pod_ip,
                "host_network": bool(p.spec.host_network),
            }
            for p in self.cluster.core.list_pod_for_all_namespaces().items
            if not p.metadata.deletion_timestamp
        }

    def verify(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(CILIUM_LAB), "verify", "--kubeconfig", str(self.cfg.kubeconfig), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
        )


# The directory the deploys keep their copies and records in: a round trip rightly leaves it.
OURS = "/var/backups/cilium-lab"


def comparable(snap: dict) -> dict:
    """A node's snapshot without what a migrate → rollback round trip may rightly change: our
    backup directory (the copies and the retired records it keeps), and when units were last
    started."""
    return {
        "files": {
            path: entry for path, entry in snap["files"].items() if not path.startswith(OURS)
        },
        "texts": snap["texts"],
        "units": {
            name: {k: v for k, v in unit.items() if k != "InvocationID"}
            for name, unit in snap["units"].items()
        },
        "iptables": snap["iptables"],
    }


def differences(before: dict, after: dict) -> list[str]:
    """Where two snapshots of every node differ, node by node and key by key."""
    out = []
    for node in sorted(set(before) | set(after)):
        for part in sorted(set(before.get(node, {})) | set(after.get(node, {}))):
            b, a = before.get(node, {}).get(part), after.get(node, {}).get(part)
            if isinstance(b, dict) and isinstance(a, dict):
                out += [
                    f"{node} {part} {key}: {b.get(key)!r} -> {a.get(key)!r}"
                    for key in sorted(set(b) | set(a))
                    if b.get(key) != a.get(key)
                ]
            elif b != a:
                out.append(f"{node} {part}: {b!r} -> {a!r}")
    return out


def _json_or_none(text: str) -> dict | None:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def leftovers(home: Path, bridge: str, nodes: list[str]) -> list[str]:
    """Whatever a sim left on this machine after `down`."""
    found = []
    mounts = Path("/proc/mounts").read_text()
    found += [f"mount {line.split()[1]}" for line in mounts.splitlines() if str(home) in line]
    found += [
        f"interface {name}"
        for name in os.listdir("/sys/class/net")
        if re.fullmatch(rf"{bridge}(v\d+)?", name)
    ]
    netns = Path("/run/netns")
    if netns.is_dir():
        found += [f"netns {name}" for name in os.listdir(netns) if name.startswith(f"{bridge}-")]
    for line in mounts.splitlines():
        fields = line.split()
        if fields[2] in ("cgroup", "cgroup2"):
            parent = Path(fields[1]) / "cilium-lab"
            found += [f"cgroup {p}" for p in parent.glob(f"{bridge}-*")] if parent.is_dir() else []
    for node in nodes:
        pid_file = home / "nodes" / node / "nspawn.pid"
        if pid_file.exists():
            found.append(f"pid file {pid_file}")
    procs = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    found += [
        f"process {line}"
        for line in procs.splitlines()
        if "systemd-nspawn" in line and str(home) in line
    ]
    return found

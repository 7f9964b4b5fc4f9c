"""
A real control plane on loopback for the cluster tests: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler, built from upstream's Go modules (or taken from the
cache, see cilium_lab/sim/binaries.py), run as processes with the same command lines the sim's
units use. kwok plays the kubelets of the nodes labelled ``KWOK_LABEL`` (the stand-in: no real
kubelet can run here); a node without the label has no kubelet at all, as a node whose kubelet
died.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from cilium_lab.cluster import kube
from cilium_lab.sim import binaries, controlplane, kwok, workloads
from cilium_lab.sim.config import ETCD_VERSION, KUBERNETES_VERSION, KWOK_VERSION

KWOK_LABEL = "cilium-lab.test/kwok"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def why_not_runnable() -> str | None:
    parts = binaries.components(KUBERNETES_VERSION, ETCD_VERSION, KWOK_VERSION)
    try:
        binaries.check_can_provide(parts)
    except Exception as error:  # SimError: no Go, too old a Go
        return f"no control plane: {error}"
    return None


class LocalControlPlane:
    def __init__(self, work: Path):
        self.work = work
        self.pki = work / "pki"
        self.logs = work / "logs"
        self.procs: list[subprocess.Popen] = []
        self.kubeconfig = work / "admin.kubeconfig"

    def start(self) -> LocalControlPlane:
        parts = binaries.components(KUBERNETES_VERSION, ETCD_VERSION, KWOK_VERSION)
        programs = {
            name: str(path) for name, path in binaries.provide(parts, echo=self._say).items()
        }
        self.logs.mkdir(parents=True, exist_ok=True)
        controlplane.write_pki(self.pki, [], [], ["all"])
        layout = controlplane.Layout(
            pki=self.pki,
            etcd_data=self.work / "etcd",
            bin=programs,
            advertise="127.0.0.1",
            bind="127.0.0.1",
            api_port=free_port(),
            etcd_client_port=free_port(),
            etcd_peer_port=free_port(),
            component_ports=False,
        )
        self.server = f"https://127.0.0.1:{layout.api_port}"
        controlplane.write_kubeconfig(self.kubeconfig, self.server, self.pki, "admin")
        for client in ("kube-controller-manager", "kube-scheduler"):
            controlplane.write_kubeconfig(
                self.pki / f"{client}.kubeconfig", self.server, self.pki, client
            )
        kwok_config = controlplane.write_kubeconfig(
            self.work / "kwok.kubeconfig", self.server, self.pki, "kwok-all"
        )
        stages = self.work / "kwok-stages.yaml"
        stages.write_text(kwok.STAGES)
        kwok_argv = kwok.argv(programs["kwok"], str(kwok_config), str(stages), None, None)
        kwok_argv = [a for a in kwok_argv if a != "--manage-all-nodes=true"]
        kwok_argv.append(f"--manage-nodes-with-label-selector={KWOK_LABEL}=true")
        try:
            self._run("etcd", controlplane.etcd(layout))
            self._run("kube-apiserver", controlplane.apiserver(layout))
            self.cluster = kube.load(str(self.kubeconfig))
            workloads.wait_api(self.cluster, 120, echo=self._say, accounts=False)
            self._run("kube-controller-manager", controlplane.controller_manager(layout))
            self._run("kube-scheduler", controlplane.scheduler(layout))
            self._run("kwok", kwok_argv)
            workloads.wait_api(self.cluster, 120, echo=self._say)
        except BaseException:
            self.stop()
            raise
        return self

    def _say(self, line: str) -> None:
        sys.stderr.write(line + "\n")

    def _run(self, name: str, argv: list[str]) -> None:
        with open(self.logs / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        time.sleep(0.2)
        if proc.poll() is not None:
            raise RuntimeError(
                f"{name} exited at once: {(self.logs / f'{name}.log').read_text()[-2000:]}"
            )

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.procs.clear()

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text()

"""
The control plane's programs: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
kwok, built once from their Go modules with this machine's Go and cached by version.

Nothing is downloaded but Go modules (through the machine's Go module proxy). Each component
is built in a small wrapper module of its own under ``<cache>/build/`` and its programs land in
``<cache>/bin/<component>-<version>/``; a later ``sim up`` (or a test) only checks they are there.
Release binaries can be given instead: ``sim up --bin-dir DIR``.
"""

from __future__ import annotations

import fcntl
import json
import os
import posixpath
import re
import shutil
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click

from cilium_lab.sim import SimError
from cilium_lab.sim.config import cache_dir

# The oldest Go that builds every pinned module (Kubernetes 1.34's go.mod says 1.24).
MIN_GO = (1, 24)
PROGRESS_EVERY = 15.0  # seconds between progress lines while a build runs


@dataclass(frozen=True)
class Component:
    """One upstream project, at one version, and the programs the sim takes from it.

    ``recipe`` names how it is built (default: its ``name``); ``module`` and ``packages`` say
    where its programs' main packages are, for the recipes that build a module's packages.
    """

    name: str
    version: str
    programs: tuple[str, ...]
    title: str
    recipe: str = ""
    module: str = ""
    packages: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"

    def cached(self) -> Path:
        return cache_dir() / "bin" / self.key


def components(kubernetes: str, etcd: str, kwok: str) -> list[Component]:
    return [
        Component("etcd", etcd, ("etcd",), f"etcd {etcd}"),
        Component(
            "kubernetes",
            kubernetes,
            ("kube-apiserver", "kube-controller-manager", "kube-scheduler"),
            f"Kubernetes {kubernetes}",
        ),
        Component("kwok", kwok, ("kwok",), f"kwok {kwok}"),
    ]


def node_components(versions: dict[str, str]) -> list[Component]:
    """What a node of the real data plane runs, and the images' programs, by upstream project.

    ``versions`` maps each project's name (``kubernetes``, ``containerd``, ``runc``,
    ``cni-plugins``, ``crane``, ``coredns``) to its pinned version.
    """
    v = versions
    return [
        Component(
            "kubernetes-node",
            v["kubernetes"],
            ("kubelet", "kube-proxy", "agnhost"),
            f"Kubernetes {v['kubernetes']} (node)",
            recipe="kubernetes",
            packages=("cmd/kubelet", "cmd/kube-proxy", "test/images/agnhost"),
        ),
        Component("pause", v["kubernetes"], ("pause",), f"pause ({v['kubernetes']})"),
        Component(
            "containerd",
            v["containerd"],
            ("containerd", "containerd-shim-runc-v2", "ctr"),
            f"containerd {v['containerd']}",
            recipe="module",
            module="github.com/containerd/containerd/v2",
            packages=("cmd/containerd", "cmd/containerd-shim-runc-v2", "cmd/ctr"),
        ),
        Component(
            "runc",
            v["runc"],
            ("runc",),
            f"runc {v['runc']}",
            recipe="module",
            module="github.com/opencontainers/runc",
            packages=("",),
        ),
        Component(
            "cni-plugins",
            v["cni-plugins"],
            ("bridge", "host-local", "loopback", "portmap"),
            f"CNI plugins {v['cni-plugins']}",
            recipe="module",
            module="github.com/containernetworking/plugins",
            packages=(
                "plugins/main/bridge",
                "plugins/ipam/host-local",
                "plugins/main/loopback",
                "plugins/meta/portmap",
            ),
        ),
        Component(
            "crane",
            v["crane"],
            ("crane",),
            f"crane {v['crane']} (go-containerregistry)",
            recipe="module",
            module="github.com/google/go-containerregistry",
            packages=("cmd/crane",),
        ),
        Component(
            "coredns",
            v["coredns"],
            ("coredns",),
            f"CoreDNS {v['coredns']}",
            recipe="main",
            module="github.com/coredns/coredns",
            packages=("",),
        ),
    ]


def _complete(directory: Path, component: Component) -> bool:
    return all(os.access(directory / program, os.X_OK) for program in component.programs)


def go_version() -> tuple[int, int] | None:
    """The machine's Go as (major, minor), or None when there is no ``go``."""
    go = shutil.which("go")
    if not go:
        return None
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True).stdout.strip()
    match = re.match(r"go(\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else None


def missing(parts: list[Component], bin_dir: Path | None = None) -> list[Component]:
    """The components that are neither in ``bin_dir`` nor built in the cache."""
    return [
        c for c in parts if not (bin_dir and _complete(bin_dir, c)) and not _complete(c.cached(), c)
    ]


def check_can_provide(parts: list[Component], bin_dir: Path | None = None) -> None:
    """Before any change: every program is at hand, or Go is here to build the rest."""
    if bin_dir is not None and not bin_dir.is_dir():
        raise SimError(f"--bin-dir {bin_dir} is not a directory")
    todo = missing(parts, bin_dir)
    if not todo:
        return
    programs = ", ".join(p for c in todo for p in c.programs)
    version = go_version()
    if version is None:
        raise SimError(
            f"the control plane needs {programs}: install Go {MIN_GO[0]}.{MIN_GO[1]}+ to build them "
            "once, or give release binaries with --bin-dir DIR, or run the node-only lab: "
            "cilium-lab sim up --no-control-plane"
        )
    if version < MIN_GO:
        raise SimError(
            f"Go {version[0]}.{version[1]} is too old to build {programs} (needs "
            f"{MIN_GO[0]}.{MIN_GO[1]}+): upgrade Go, or give release binaries with --bin-dir DIR"
        )


def provide(
    parts: list[Component], bin_dir: Path | None = None, echo=click.echo
) -> dict[str, Path]:
    """program name -> path, building (once, under a lock) what neither ``bin_dir`` nor the cache has."""
    check_can_provide(parts, bin_dir)
    paths: dict[str, Path] = {}
    for component in parts:
        if bin_dir and _complete(bin_dir, component):
            directory = bin_dir
        else:
            directory = ensure_built(component, echo)
        for program in component.programs:
            paths[program] = (directory / program).absolute()
    return paths


def ensure_built(component: Component, echo=click.echo) -> Path:
    target = component.cached()
    if _complete(target, component):
        return target
    (cache_dir() / "bin").mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / "bin" / ".lock", "w") as lock:
        # Two sims (or a test session and a sim) coming up at once build once.
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            echo(
                f"waiting for another build in {cache_dir() / 'build'} to finish (then {component.title})"
            )
            fcntl.flock(lock, fcntl.LOCK_EX)
        if not _complete(target, component):
            _build(component, target, echo)
    return target


# Building.


def cilium_components(version: str) -> list[Component]:
    """Cilium's agent, operator and tools, for the agent's and operator's images."""
    return [
        Component(
            "cilium",
            version,
            (
                "cilium-agent",
                "cilium-operator-generic",
                "cilium-dbg",
                "cilium-cni",
                "cilium-health",
                "cilium-health-responder",
                "cilium-mount",
                "cilium-sysctlfix",
            ),
            f"Cilium {version}",
            recipe="main",
            module="github.com/cilium/cilium",
            packages=(
                "daemon",
                "operator",
                "cilium-dbg",
                "plugins/cilium-cni",
                "cilium-health",
                "cilium-health/responder",
                "tools/mount",
                "tools/sysctlfix",
            ),
        ),
    ]


# A first build's time on this project's 2-core machine, with the modules downloaded (measured
# 2026-12-02), for the line that starts it.
FIRST_BUILD = {
    "etcd": "1 minute",
    "kubernetes": "4-5 minutes",
    "kwok": "1-2 minutes",
    "kubernetes-node": "1 minute",
    "containerd": "1 minute",
    "coredns": "2 minutes",
    "cilium": "6-10 minutes",
}

# Built with cgo (and linked statically): runc needs it for its nsenter part.
CGO = {"runc"}
# Go build tags, as upstream's static release builds use them.
TAGS = {
    "runc": "netgo osusergo",
    "containerd": "no_btrfs no_devmapper no_zfs",
    # cilium-operator-generic's IPAM (operator/Makefile); the agent and tools ignore it.
    "cilium": "osusergo ipam_provider_operator",
}


def _go_env(cgo: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    # Static programs, as upstream releases them: they run inside the nodes' Debian root too.
    env["CGO_ENABLED"] = "1" if cgo else "0"
    # This machine's Go only: never fetch another toolchain behind the user's back.
    env["GOTOOLCHAIN"] = "local"
    env["GOFLAGS"] = "-buildvcs=false -mod=mod"
    return env


@contextmanager
def _heartbeat(doing: str, started: float, echo):
    """Say every few seconds that ``doing`` goes on, with the time so far, until the block ends."""
    done = threading.Event()

    def beat():
        while not done.wait(PROGRESS_EVERY):
            echo(f"  [{_clock(time.monotonic() - started)}] {doing()}")

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()


def _go(args: list[str], cwd: Path, what: str) -> str:
    proc = subprocess.run(["go", *args], cwd=cwd, env=_go_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise SimError(f"{what} failed: go {' '.join(args[:2])}: {tail}")
    return proc.stdout


def _module(module: str, version: str, work: Path) -> dict:
    """``go mod download -json`` of ``module@version`` (its ``Dir``, ``GoMod``): from the module
    cache, downloaded when missing."""
    return json.loads(
        _go(["mod", "download", "-json", f"{module}@{version}"], work, f"fetching {module}")
    )


def module_dir(module: str, version: str) -> Path:
    """Where the Go module cache holds the source of ``module@version`` (downloaded when missing)."""
    work = cache_dir() / "build"
    work.mkdir(parents=True, exist_ok=True)
    return Path(_module(module, version, work)["Dir"])


def _module_file(module: str, version: str, work: Path) -> Path:
    """The go.mod of ``module@version``."""
    return Path(_module(module, version, work)["GoMod"])


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _prepare_kubernetes(component: Component, work: Path) -> tuple[list[str], list[str]]:
    """k8s.io/kubernetes points its k8s.io/* staging modules at ./staging: pin them to v0.X.Y."""
    version = component.version
    staging_version = "v0." + version.removeprefix("v").split(".", 1)[1]
    gomod = _module_file("k8s.io/kubernetes", version, work).read_text()
    staging = re.findall(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", gomod, re.M)
    go_line = re.search(r"^go\s+(\S+)", gomod, re.M)
    replaces = "\n".join(f"\t{module} => {module} {staging_version}" for module in staging)
    _write(
        work / "go.mod",
        f"module cilium-lab.local/build/kubernetes\n\ngo {go_line.group(1) if go_line else '1.24.0'}\n\n"
        f"require k8s.io/kubernetes {version}\n\nreplace (\n{replaces}\n)\n",
    )
    paths = component.packages or tuple(f"cmd/{program}" for program in component.programs)
    packages = [f"k8s.io/kubernetes/{path}" for path in paths]
    _go(["get", *(f"{p}@{version}" for p in packages)], work, f"resolving {component.title}")
    major, minor = version.removeprefix("v").split(".")[:2]
    # What `kubectl version` and helm's kubeVersion check read (unset, it says v0.0.0).
    ldflags = (
        f"-s -w -X k8s.io/component-base/version.gitVersion={version} "
        f"-X k8s.io/component-base/version.gitMajor={major} "
        f"-X k8s.io/component-base/version.gitMinor={minor} "
        "-X k8s.io/component-base/version.gitTreeState=clean"
    )
    return _go_build(component, packages, ldflags), packages


ETCD_MAIN = """// The etcd server, as etcd's own main package starts it.
package main

import (
\t"os"

\t"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
"""


def _prepare_etcd(component: Component, work: Path) -> tuple[list[str], list[str]]:
    _write(work / "go.mod", "module cilium-lab.local/build/etcd\n\ngo 1.24.0\n")
    _write(work / "main.go", ETCD_MAIN)
    # No `go mod tidy`: it would fetch every test dependency too; the build (-mod=mod) records
    # what it needs.
    _go(
        ["get", f"go.etcd.io/etcd/server/v3@{component.version}"],
        work,
        f"resolving {component.title}",
    )
    return ["go", "build", "-v", "-trimpath", "-ldflags", "-s -w", "-o", "{out}/etcd", "."], ["."]


def _prepare_kwok(component: Component, work: Path) -> tuple[list[str], list[str]]:
    package = "sigs.k8s.io/kwok/cmd/kwok"
    _write(work / "go.mod", "module cilium-lab.local/build/kwok\n\ngo 1.24.0\n")
    _write(work / "tools.go", f'//go:build tools\n\npackage tools\n\nimport _ "{package}"\n')
    _go(["get", f"{package}@{component.version}"], work, f"resolving {component.title}")
    return ["go", "build", "-v", "-trimpath", "-ldflags", "-s -w", "-o", "{out}/kwok", package], [
        package
    ]


def _go_build(component: Component, packages: list[str], ldflags: str = "-s -w") -> list[str]:
    """``go build`` of ``packages`` into ``{out}/``, one program each, named as the sim names it."""
    tags = TAGS.get(component.name)
    if component.name in CGO:
        ldflags += " -extldflags -static"
    args = ["go", "build", "-v", "-trimpath", "-ldflags", ldflags]
    if tags:
        args += ["-tags", tags]
    if len(packages) == 1:
        return [*args, "-o", f"{{out}}/{component.programs[0]}", packages[0]]
    # Several packages land in {out}/ under their last path element (see _rename_outputs).
    return [*args, "-o", "{out}/", *packages]


def _rename_outputs(component: Component, out: Path) -> None:
    """``go build -o DIR/`` names a program after its package (Cilium's ``daemon``): rename it."""
    for package, program in zip(component.packages, component.programs, strict=False):
        built = out / posixpath.basename(package.rstrip("/"))
        if package and built.name != program and built.exists():
            built.rename(out / program)


def _module_packages(component: Component) -> list[str]:
    return [f"{component.module}/{p}".rstrip("/") for p in component.packages]


def _prepare_module(component: Component, work: Path) -> tuple[list[str], list[str]]:
    """A wrapper module that requires ``component.module`` and builds its main packages."""
    packages = _module_packages(component)
    _write(work / "go.mod", f"module cilium-lab.local/build/{component.name}\n\ngo 1.24.0\n")
    imports = "\n".join(f'import _ "{p}"' for p in packages)
    _write(work / "tools.go", f"//go:build tools\n\npackage tools\n\n{imports}\n")
    _go(["get", f"{component.module}@{component.version}"], work, f"resolving {component.title}")
    return _go_build(component, packages), packages


def _prepare_main(component: Component, work: Path) -> tuple[list[str], list[str]]:
    """The module itself as the main module, from a copy of its source: its go.mod's replace
    directives (Cilium's forks, CoreDNS's pins) only hold there."""
    source = work / "src"
    shutil.copytree(_module(component.module, component.version, work)["Dir"], source)
    for directory, dirs, files in os.walk(source):
        for name in dirs + files:
            os.chmod(os.path.join(directory, name), 0o755 if name in dirs else 0o644)
    os.chmod(source, 0o755)
    packages = [f"./{p}" if p else "." for p in component.packages]
    ldflags = "-s -w"
    if component.name == "cilium":
        # What `cilium-dbg version` and the agent report (Makefile.defs sets it the same way).
        ldflags += f" -X github.com/cilium/cilium/pkg/version.ciliumVersion={component.version[1:]}"
    return _go_build(component, packages, ldflags), packages


def _prepare_pause(component: Component, work: Path) -> tuple[list[str], list[str]]:
    """Kubernetes' pause, a small C program in its module (build/pause/linux/pause.c)."""
    module = _module("k8s.io/kubernetes", component.version, work)
    source = Path(module["Dir"]) / "build/pause/linux/pause.c"
    version = component.version.removeprefix("v")
    return [
        "gcc",
        "-Os",
        "-Wall",
        "-Werror",
        "-static",
        f'-DVERSION="{version}"',
        "-o",
        "{out}/pause",
        str(source),
    ], []


RECIPES = {
    "kubernetes": _prepare_kubernetes,
    "etcd": _prepare_etcd,
    "kwok": _prepare_kwok,
    "module": _prepare_module,
    "main": _prepare_main,
    "pause": _prepare_pause,
}


def _build(component: Component, target: Path, echo) -> None:
    work = cache_dir() / "build" / component.key
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out = target.with_name(target.name + ".building")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    started = time.monotonic()
    programs = ", ".join(component.programs)
    guess = FIRST_BUILD.get(component.name)
    echo(
        f"building {programs} ({component.title}) from its Go modules, once; cached in {target}"
        + (f" (the first time about {guess} on 2 cores)" if guess else "")
    )
    with _heartbeat(
        lambda: f"resolving {component.title}'s Go modules (downloaded the first time)",
        started,
        echo,
    ):
        args, packages = RECIPES[component.recipe or component.name](component, work)
        if args[0] == "go" and component.recipe == "main":
            work = work / "src"
        total = _package_count(packages, work) if packages else None
    args = [a.replace("{out}", str(out)) for a in args]
    _run_with_progress(args, work, component, started, total, echo)
    _rename_outputs(component, out)
    for program in component.programs:
        if not os.access(out / program, os.X_OK):
            raise SimError(f"building {component.title} made no {program} in {out}")
    shutil.rmtree(target, ignore_errors=True)
    out.rename(target)
    echo(f"  [{_clock(time.monotonic() - started)}] {component.title} built: {programs}")


def _package_count(packages: list[str], work: Path) -> int | None:
    """How many packages the build needs, for a progress figure (None when go cannot say)."""
    proc = subprocess.run(
        ["go", "list", "-deps", *packages], cwd=work, env=_go_env(), capture_output=True, text=True
    )
    return len(proc.stdout.split()) if proc.returncode == 0 else None


def _clock(seconds: float) -> str:
    return f"{int(seconds) // 60:2d}m{int(seconds) % 60:02d}s"


def _run_with_progress(args, work: Path, component: Component, started: float, total, echo) -> None:
    """``go build -v`` names each package it compiles: count them, and say so every few seconds."""
    proc = subprocess.Popen(
        args,
        cwd=work,
        env=_go_env(cgo=component.name in CGO),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    of = f" of about {total}" if total else ""
    doing = lambda: (
        f"building {component.title}: {len(lines)}{of} packages compiled "
        "(the rest come from Go's build cache)"
    )
    with _heartbeat(doing, started, echo):
        try:
            assert proc.stdout
            for line in proc.stdout:
                lines.append(line.rstrip())
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    if proc.returncode != 0:
        errors = [line for line in lines if ": " in line or line.startswith(("#", "go:"))][-3:]
        raise SimError(
            f"building {component.title} failed ({args[0]} exit {proc.returncode}): {' | '.join(errors)}"
        )

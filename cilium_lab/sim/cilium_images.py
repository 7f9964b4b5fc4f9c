"""
Cilium's agent and operator images for the real data plane, made by the sim from what it builds,
since no outside registry is reachable here.

- The agent's image is a Debian root (debootstrap, built once and cached like the nodes' root)
  with what the agent runs at start: clang-19 and llvm-19 (it compiles its datapath on every
  node), bpftool, iproute2, iptables and ipset; then a layer of Cilium's programs built from
  ``github.com/cilium/cilium`` (:func:`cilium_lab.sim.binaries.cilium_components`), the ``bpf/``
  sources of the same release, and the three scripts the chart runs in it
  (``/install-plugin.sh``, ``/init-container.sh``, ``/cni-uninstall.sh``), our own.
- The operator's image holds ``cilium-operator-generic`` alone.
- crane stacks the layers and writes the configuration; each image is kept as a tarball in
  ``<cache>/images/`` by Cilium's version and this module's recipe, so a sim pushes it in
  seconds and never builds it twice.

The chart is pointed at them by the sim's ``cilium_values_overrides`` (its inventory), never
by the chapter's values.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import shutil
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import click

from cilium_lab.sim import binaries, images, rootfs
from cilium_lab.sim.config import SimConfig, cache_dir

ROOT_PACKAGES = ["bash", "clang-19", "llvm-19", "bpftool", "iproute2", "iptables", "ipset", "kmod"]
# The agent runs "clang" and "llc" by name.
TOOL_LINKS = {
    "/usr/local/bin/clang": "/usr/bin/clang-19",
    "/usr/local/bin/llc": "/usr/bin/llc-19",
    "/usr/local/bin/llvm-objcopy": "/usr/bin/llvm-objcopy-19",
}
PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# What a container image has no use for, and would only make every node's pull longer.
TRIMMED = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/locale",
    "usr/share/info",
    "var/cache/apt",
    "var/lib/apt/lists",
    "var/log",
)
# Left empty in the image: the runtime mounts its own.
EMPTY = ("dev", "proc", "sys", "run", "tmp")
BPF_DIR = "var/lib/cilium/bpf"
CILIUM_MODULE = "github.com/cilium/cilium"

# The chart's init container: Cilium's CNI plugin into the node's /opt/cni/bin (mounted at
# /host/opt/cni/bin), written beside and renamed, so that a kubelet never runs half a file.
INSTALL_PLUGIN = """#!/bin/bash
set -euo pipefail
dest=${CNI_BIN_DEST:-/host/opt/cni/bin}
source=${CNI_BIN_SOURCE:-/opt/cni/bin}
for plugin in "$source"/*; do
    name=$(basename "$plugin")
    cp "$plugin" "$dest/.$name.cilium-lab"
    chmod 0755 "$dest/.$name.cilium-lab"
    mv -f "$dest/.$name.cilium-lab" "$dest/$name"
    echo "installed $name into $dest"
done
"""

# The chart's clean-cilium-state init container: what the cilium-config ConfigMap asks for.
INIT_CONTAINER = """#!/bin/bash
set -euo pipefail
if [ "${CILIUM_ALL_STATE:-}" = "true" ]; then
    exec cilium-dbg post-uninstall-cleanup -f --all-state
elif [ "${CILIUM_BPF_STATE:-}" = "true" ]; then
    exec cilium-dbg post-uninstall-cleanup -f --bpf-state
fi
echo "no state to clean"
"""

# The agent's preStop hook: its CNI configuration goes only when the ConfigMap says to.
CNI_UNINSTALL = """#!/bin/bash
set -euo pipefail
if [ "$(cat /tmp/cilium/config-map/cni-uninstall 2>/dev/null)" != "true" ]; then
    exit 0
fi
rm -f /host/etc/cni/net.d/05-cilium.conflist /host/etc/cni/net.d/05-cilium.conf
"""

SCRIPTS = {
    "install-plugin.sh": INSTALL_PLUGIN,
    "init-container.sh": INIT_CONTAINER,
    "cni-uninstall.sh": CNI_UNINSTALL,
}

AGENT_PROGRAMS = {
    "usr/bin/cilium-agent": "cilium-agent",
    "usr/bin/cilium-dbg": "cilium-dbg",
    "usr/bin/cilium-health": "cilium-health",
    "usr/bin/cilium-health-responder": "cilium-health-responder",
    "usr/bin/cilium-mount": "cilium-mount",
    "usr/bin/cilium-sysctlfix": "cilium-sysctlfix",
    "opt/cni/bin/cilium-cni": "cilium-cni",
}


@dataclass(frozen=True)
class CiliumImage:
    repository: str
    version: str  # Cilium's, with its v

    @property
    def tag(self) -> str:
        return self.version

    @property
    def cache_name(self) -> str:
        return f"{self.repository.replace('/', '_')}-{self.version}-{recipe_hash()}.tar"

    def ref(self, cfg: SimConfig) -> str:
        return f"{images.registry_address(cfg)}/{self.repository}:{self.tag}"


def agent_image(version: str) -> CiliumImage:
    return CiliumImage("cilium/cilium", version)


def operator_image(version: str) -> CiliumImage:
    return CiliumImage("cilium/operator-generic", version)


def chart_overrides(cfg: SimConfig, version: str) -> dict:
    """The chart values that point it at the sim's images, with no digests, and no Envoy: it
    cannot be built here, and ``l7Proxy: false`` deploys none."""
    return {
        "image": {"override": agent_image(version).ref(cfg), "useDigest": False},
        "operator": {"image": {"override": operator_image(version).ref(cfg), "useDigest": False}},
        "l7Proxy": False,
        "envoy": {"enabled": False},
    }


def recipe_hash() -> str:
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(rootfs.mirror().encode())
    return digest.hexdigest()[:12]


def root_hash() -> str:
    """The agent image's Debian root's own recipe: its packages, links and trims, the mirror
    (editing the scripts or the layers builds the image again, not the root)."""
    recipe = repr((rootfs.SUITE, ROOT_PACKAGES, sorted(TOOL_LINKS.items()), TRIMMED))
    return hashlib.sha256((recipe + rootfs.mirror()).encode()).hexdigest()[:12]


def root_path() -> Path:
    return cache_dir() / f"cilium-root-{root_hash()}"


def ensure_root(echo=click.echo) -> Path:
    """The agent image's Debian root, built once (under the root filesystems' lock)."""
    path = root_path()
    stamp = path / rootfs.STAMP
    if stamp.exists():
        return path
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists():
            return path
        tmp = path.with_name(path.name + ".building")
        shutil.rmtree(tmp, ignore_errors=True)
        echo(
            f"building the Cilium agent image's root in {path} (debootstrap {rootfs.SUITE} with "
            "clang-19 and llvm-19, a few minutes; once)"
        )
        started = time.monotonic()
        rootfs.run_debootstrap(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(ROOT_PACKAGES)}",
                rootfs.SUITE,
                str(tmp),
                rootfs.mirror(),
            ],
            echo,
            started,
        )
        for link, target in TOOL_LINKS.items():
            (tmp / link.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, tmp / link.lstrip("/"))
        for trimmed in TRIMMED:
            shutil.rmtree(tmp / trimmed, ignore_errors=True)
            (tmp / trimmed).mkdir(parents=True, exist_ok=True)
        (tmp / rootfs.STAMP).write_text(path.name + "\n")
        tmp.rename(path)
        echo(f"  the agent image's root is ready ({time.monotonic() - started:.0f}s)")
    for old in cache_dir().glob("cilium-root-*"):
        if old != path and not old.name.endswith(".building"):
            shutil.rmtree(old, ignore_errors=True)
    return path


def _root_filter(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    top = info.name.split("/", 1)
    if top[0] in EMPTY and len(top) > 1:
        return None
    if info.name == rootfs.STAMP or info.isdev():
        return None
    return info


def _owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    return info


def _file(tar: tarfile.TarFile, arcname: str, source: Path | None, text: str = "") -> None:
    if source is not None:
        info = _owned_by_root(tar.gettarinfo(str(source), arcname=arcname))
        info.mode = 0o755
        with open(source, "rb") as data:
            tar.addfile(info, data)
        return
    payload = text.encode()
    info = _owned_by_root(tarfile.TarInfo(arcname))
    info.size, info.mode = len(payload), 0o755
    tar.addfile(info, io.BytesIO(payload))


def _agent_layers(work: Path, root: Path, programs: dict[str, str], version: str) -> list[Path]:
    # The datapath's sources of the same release, from the Go module cache (downloaded when missing).
    bpf = binaries.module_dir(CILIUM_MODULE, version) / "bpf"
    base = work / "root.tar"
    with tarfile.open(base, "w") as tar:
        for entry in sorted(os.listdir(root)):
            tar.add(root / entry, arcname=entry, filter=_root_filter)
    cilium = work / "cilium.tar"
    with tarfile.open(cilium, "w") as tar:
        for arcname, program in AGENT_PROGRAMS.items():
            _file(tar, arcname, Path(programs[program]))
        for name, text in SCRIPTS.items():
            _file(tar, name, None, text)
        tar.add(bpf, arcname=BPF_DIR, filter=_owned_by_root)
    return [base, cilium]


def _operator_layers(work: Path, programs: dict[str, str]) -> list[Path]:
    layer = work / "operator.tar"
    with tarfile.open(layer, "w") as tar:
        _file(tar, "usr/bin/cilium-operator-generic", Path(programs["cilium-operator-generic"]))
        info = _owned_by_root(tarfile.TarInfo("tmp"))
        info.type, info.mode = tarfile.DIRTYPE, 0o1777
        tar.addfile(info)
    return [layer]


def _build(cfg: SimConfig, image: CiliumImage, crane: str, layers, echo) -> None:
    kept = images.images_dir() / image.cache_name
    work = images.images_dir() / f".{image.cache_name}.building"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.monotonic()
    echo(f"building the image {image.repository}:{image.tag}, once; kept in {kept}")
    ref = image.ref(cfg)
    try:
        new_layers = [a for layer in layers(work) for a in ("-f", str(layer))]
        images.run_crane(
            crane, "append", "--oci-empty-base", *new_layers, "-t", ref, what=f"building {ref}"
        )
        images.run_crane(crane, "mutate", ref, "--env", PATH, "-t", ref, what=f"configuring {ref}")
        tmp = work / "image.tar"
        images.run_crane(crane, "pull", "--format", "tarball", ref, str(tmp), what=f"keeping {ref}")
        os.replace(tmp, kept)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    echo(f"  {image.repository}:{image.tag} built ({time.monotonic() - started:.0f}s)")


def provide(
    cfg: SimConfig, crane: str, programs: dict[str, str], version: str, echo=click.echo
) -> None:
    """Cilium's two images in the sim's registry: pushed from their kept tarballs, or built once."""
    images.images_dir().mkdir(parents=True, exist_ok=True)
    wanted = [
        (
            agent_image(version),
            lambda work: _agent_layers(work, ensure_root(echo), programs, version),
        ),
        (operator_image(version), lambda work: _operator_layers(work, programs)),
    ]
    for image, layers in wanted:
        kept = images.images_dir() / image.cache_name
        if not kept.exists():
            _build(cfg, image, crane, layers, echo)
        else:
            images.run_crane(
                crane, "push", str(kept), image.ref(cfg), what=f"pushing {image.repository}"
            )
    for name in os.listdir(images.images_dir()):
        # Images of an earlier recipe: never pushed again.
        if (
            name.startswith(("cilium_cilium-", "cilium_operator-generic-"))
            and name.endswith(".tar")
            and recipe_hash() not in name
        ):
            (images.images_dir() / name).unlink(missing_ok=True)

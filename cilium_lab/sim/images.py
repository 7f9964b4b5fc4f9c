"""
The real data plane's container images and the registry the nodes pull them from.

No outside registry is reachable here, so the sim makes its images from what it builds (pause,
CoreDNS, agnhost) and serves them itself, as an air-gapped cluster's own registry would:

- The registry is go-containerregistry's (``crane registry serve``), on the bridge's address.
  The same module gives ``crane``, which builds the images (``append`` a layer to an empty base,
  ``mutate`` its entrypoint) and copies them in and out of tarballs: one Go program for the
  registry and the image tool, where distribution's registry would still need a second tool to
  build images.
- Each image is built once and kept, by version, as a tarball in ``<cache>/images/``; a sim
  that comes up pushes the kept tarballs into its registry (seconds), never building twice.
- A layer is a tar archive written with Python's :mod:`tarfile` from the built programs;
  manifests and configurations are crane's.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import click

from cilium_lab.sim import SimError, servers
from cilium_lab.sim.config import NODE_VERSIONS, SimConfig, cache_dir

REGISTRY_PORT = 5000


@dataclass(frozen=True)
class Image:
    """One image: its repository and tag in the sim's registry, and what it holds."""

    repository: str
    tag: str
    files: tuple[tuple[str, str], ...]  # (path in the image, program name)
    entrypoint: tuple[str, ...]

    @property
    def cache_name(self) -> str:
        return f"{self.repository.replace('/', '_')}-{self.tag}.tar"


def _tag(version: str) -> str:
    return version.removeprefix("v")


IMAGES = {
    "pause": Image("pause", _tag(NODE_VERSIONS["kubernetes"]), (("/pause", "pause"),), ("/pause",)),
    "coredns": Image(
        "coredns/coredns",
        _tag(NODE_VERSIONS["coredns"]),
        (("/coredns", "coredns"),),
        ("/coredns",),
    ),
    # Kubernetes' own e2e test image: a web server, a DNS client, a TCP and UDP prober.
    "agnhost": Image(
        "agnhost", _tag(NODE_VERSIONS["kubernetes"]), (("/agnhost", "agnhost"),), ("/agnhost",)
    ),
}


def registry_address(cfg: SimConfig) -> str:
    return f"{cfg.bridge_address}:{REGISTRY_PORT}"


def image_ref(cfg: SimConfig, name: str) -> str:
    image = IMAGES[name]
    return f"{registry_address(cfg)}/{image.repository}:{image.tag}"


def images_dir() -> Path:
    return cache_dir() / "images"


# The registry.


def _answers(address: str, timeout: float = 1) -> str | None:
    """None when the registry at ``address`` answers its API's base endpoint, else why not."""
    try:
        with urllib.request.urlopen(f"http://{address}/v2/", timeout=timeout) as response:
            response.read(64)
        return None
    except urllib.error.HTTPError as error:
        return None if error.code == 401 else f"HTTP {error.code}"
    except (urllib.error.URLError, OSError) as error:
        return str(getattr(error, "reason", error))


def serve(cfg: SimConfig, crane: str) -> int:
    """Start the sim's registry on the bridge; return its pid once it answers."""
    address = registry_address(cfg)
    storage = cfg.path / "registry"
    storage.mkdir(parents=True, exist_ok=True)
    return servers.start(
        [crane, "registry", "serve", "--address", address, "--disk", str(storage)],
        cfg.path / "registry.log",
        f"the registry on {address}",
        lambda: _answers(address),
    )


def running(pid: int | None) -> bool:
    args = servers.command_line(pid)
    return bool(args) and args[0].endswith(b"crane") and b"registry" in args


def stop(pid: int | None) -> None:
    servers.stop(pid, running)


# Images.


def _layer(image: Image, programs: dict[str, str]) -> bytes:
    """A layer holding the image's programs (root-owned, mode 0755), with their directories."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        seen: set[str] = set()
        for path, program in image.files:
            parts = path.strip("/").split("/")
            for depth in range(1, len(parts)):
                directory = "/".join(parts[:depth])
                if directory not in seen:
                    seen.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            info = tar.gettarinfo(programs[program], arcname="/".join(parts))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = 0o755
            info.mtime = 0
            with open(programs[program], "rb") as source:
                tar.addfile(info, source)
    return buffer.getvalue()


def run_crane(program: str, *args: str, what: str) -> str:
    proc = subprocess.run([program, "--insecure", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-2:])
        raise SimError(f"{what} failed: crane {args[0]}: {tail}")
    return proc.stdout


def build(cfg: SimConfig, name: str, crane: str, programs: dict[str, str], echo) -> Path:
    """Build ``name`` into the running registry and keep it as a tarball; return the tarball."""
    image = IMAGES[name]
    ref = image_ref(cfg, name)
    kept = images_dir() / image.cache_name
    work = images_dir() / f".{image.cache_name}.building"
    work.mkdir(parents=True, exist_ok=True)
    echo(f"building the image {image.repository}:{image.tag}, once; kept in {kept}")
    layer = work / "layer.tar"
    layer.write_bytes(_layer(image, programs))
    run_crane(
        crane, "append", "--oci-empty-base", "-f", str(layer), "-t", ref, what=f"building {ref}"
    )
    run_crane(
        crane,
        "mutate",
        ref,
        "--entrypoint",
        ",".join(image.entrypoint),
        "-t",
        ref,
        what=f"setting {ref}'s entrypoint",
    )
    tmp = work / "image.tar"
    run_crane(crane, "pull", "--format", "tarball", ref, str(tmp), what=f"keeping {ref}")
    os.replace(tmp, kept)
    layer.unlink()
    work.rmdir()
    return kept


def provide(cfg: SimConfig, crane: str, programs: dict[str, str], echo=click.echo) -> None:
    """Every image in the sim's registry: pushed from its kept tarball, or built once."""
    images_dir().mkdir(parents=True, exist_ok=True)
    for name, image in IMAGES.items():
        kept = images_dir() / image.cache_name
        if kept.exists():
            run_crane(crane, "push", str(kept), image_ref(cfg, name), what=f"pushing {name}")
        else:
            build(cfg, name, crane, programs, echo)

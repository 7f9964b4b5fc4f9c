"""Cilium's images for the simulated lab's real data plane (cilium_lab/sim/cilium_images.py),
without a registry: the layers' contents, the chart values that point at them, and the chart's
init-container scripts run for real on stand-in directories."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from types import SimpleNamespace

import pytest

from cilium_lab.sim import binaries, cilium_images

needs_bash = pytest.mark.skipif(not shutil.which("bash"), reason="the scripts are bash")


@pytest.fixture
def built(tmp_path, monkeypatch):
    """The agent's two layers, from a small stand-in root, programs and bpf/ directory."""
    root = tmp_path / "root"
    for directory in ("usr/bin", "proc/1", "dev", "tmp/junk", "etc"):
        (root / directory).mkdir(parents=True)
    (root / "usr/bin/clang-19").write_text("clang")
    (root / "usr/bin/clang-19").chmod(0o755)
    (root / "usr/bin/clang").symlink_to("clang-19")
    (root / "proc/1/status").write_text("not for the image")
    (root / "tmp/junk/file").write_text("not for the image")
    (root / "etc/os-release").write_text("bookworm")
    programs = {}
    for program in set(cilium_images.AGENT_PROGRAMS.values()):
        path = tmp_path / "bin" / program
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"#!/bin/sh\necho {program}\n")
        programs[program] = str(path)
    module = tmp_path / "module"
    (module / "bpf" / "lib").mkdir(parents=True)
    (module / "bpf" / "bpf_lxc.c").write_text("int x;")
    (module / "bpf" / "lib" / "common.h").write_text("#define X")
    monkeypatch.setattr(binaries, "module_dir", lambda name, version: module)
    work = tmp_path / "work"
    work.mkdir()
    return cilium_images._agent_layers(work, root, programs, "v1.19.6")


def members(layer: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(layer) as tar:
        return {m.name: m for m in tar.getmembers()}


def test_the_root_layer_keeps_the_root_and_leaves_the_runtimes_directories_empty(built):
    root_layer, _ = built
    names = members(root_layer)
    assert {"usr/bin/clang-19", "usr/bin/clang", "etc/os-release"} <= set(names)
    assert names["usr/bin/clang"].issym() and names["usr/bin/clang"].linkname == "clang-19"
    assert {"proc", "tmp", "dev"} <= set(names)
    assert not [n for n in names if n.startswith(("proc/", "tmp/", "dev/"))]


def test_the_cilium_layer_holds_the_programs_the_scripts_and_the_releases_bpf_sources(built):
    _, cilium_layer = built
    names = members(cilium_layer)
    for path in [*cilium_images.AGENT_PROGRAMS, *cilium_images.SCRIPTS]:
        info = names[path]
        assert info.isfile() and info.mode == 0o755 and (info.uid, info.gid) == (0, 0), path
    assert names[f"{cilium_images.BPF_DIR}/bpf_lxc.c"].isfile()
    assert names[f"{cilium_images.BPF_DIR}/lib/common.h"].isfile()
    with tarfile.open(cilium_layer) as tar:
        script = tar.extractfile("init-container.sh").read().decode()
    assert script == cilium_images.INIT_CONTAINER


def test_the_chart_is_pointed_at_the_sims_images_without_digests_or_envoy():
    cfg = SimpleNamespace(bridge_address="10.251.0.1")
    values = cilium_images.chart_overrides(cfg, "v1.19.6")
    assert values["image"] == {
        "override": "10.251.0.1:5000/cilium/cilium:v1.19.6",
        "useDigest": False,
    }
    assert values["operator"]["image"] == {
        "override": "10.251.0.1:5000/cilium/operator-generic:v1.19.6",
        "useDigest": False,
    }
    assert values["l7Proxy"] is False


def test_the_roots_cache_key_is_its_own_recipe_not_the_scripts(monkeypatch):
    before = cilium_images.root_hash()
    monkeypatch.setattr(cilium_images, "INIT_CONTAINER", "#!/bin/bash\ntrue\n")
    assert cilium_images.root_hash() == before
    monkeypatch.setattr(cilium_images, "ROOT_PACKAGES", [*cilium_images.ROOT_PACKAGES, "curl"])
    assert cilium_images.root_hash() != before


@needs_bash
def test_install_plugin_puts_every_plugin_in_place_executable(tmp_path):
    source, dest = tmp_path / "image-cni", tmp_path / "host-cni"
    source.mkdir()
    dest.mkdir()
    (source / "cilium-cni").write_text("new")
    (dest / "cilium-cni").write_text("old")
    (dest / "bridge").write_text("the guide's")
    script = tmp_path / "install-plugin.sh"
    script.write_text(cilium_images.INSTALL_PLUGIN)
    env = {**os.environ, "CNI_BIN_SOURCE": str(source), "CNI_BIN_DEST": str(dest)}
    subprocess.run(["bash", str(script)], env=env, check=True, capture_output=True)
    assert (dest / "cilium-cni").read_text() == "new"
    assert os.access(dest / "cilium-cni", os.X_OK)
    assert (dest / "bridge").read_text() == "the guide's"
    assert sorted(p.name for p in dest.iterdir()) == ["bridge", "cilium-cni"]


@needs_bash
@pytest.mark.parametrize(
    ("env", "called"),
    [
        ({"CILIUM_ALL_STATE": "true"}, "post-uninstall-cleanup -f --all-state"),
        ({"CILIUM_BPF_STATE": "true"}, "post-uninstall-cleanup -f --bpf-state"),
        ({}, None),
    ],
)
def test_init_container_cleans_only_the_state_the_config_map_asks_for(tmp_path, env, called):
    fake = tmp_path / "cilium-dbg"
    fake.write_text(f'#!/bin/sh\necho "$*" > {tmp_path}/called\n')
    fake.chmod(0o755)
    script = tmp_path / "init-container.sh"
    script.write_text(cilium_images.INIT_CONTAINER)
    run_env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", **env}
    subprocess.run(["bash", str(script)], env=run_env, check=True, capture_output=True)
    recorded = tmp_path / "called"
    assert (recorded.read_text().strip() if recorded.exists() else None) == called

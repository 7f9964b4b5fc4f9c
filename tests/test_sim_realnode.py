"""The real data plane's node pieces that run without a sim: the runc wrapper (run for real on a
bundle of its own, in front of a recording stand-in for runc), the images' layers (read back
with tarfile) and the kubelet's and kube-proxy's configurations (parsed back)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tomllib
from pathlib import Path

import pytest
import yaml

from cilium_lab.sim import images, realnode
from cilium_lab.sim.config import SimConfig
from cilium_lab.sim.rootfs import KUBE_PROXY_CONFIG

needs_jq = pytest.mark.skipif(not shutil.which("jq"), reason="the runc wrapper needs jq")

SPEC = {
    "ociVersion": "1.2.0",
    "process": {"args": ["/pause"], "oomScoreAdj": -998},
    "linux": {
        "resources": {
            "devices": [{"allow": False, "access": "rwm"}],
            "cpu": {"shares": 2, "period": 100000},
            "memory": {"limit": 1 << 30},
            "pids": {"limit": 100},
            "unified": {"memory.high": "max"},
        },
        "namespaces": [{"type": "pid"}],
    },
}


@pytest.fixture
def wrapper(tmp_path: Path) -> tuple[Path, Path]:
    """The wrapper, pointed at a stand-in runc that records its arguments and the spec it got."""
    record = tmp_path / "record"
    fake = tmp_path / "runc.real"
    fake.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" > {record}.args\n'
        'for a in "$@"; do a=${a#--bundle=}; '
        f'[ -f "$a/config.json" ] && cp "$a/config.json" {record}.spec; done\n'
        "exit 0\n"
    )
    fake.chmod(0o755)
    script = tmp_path / "runc"
    script.write_text(realnode.RUNC_WRAPPER.replace(realnode.REAL_RUNC, str(fake)))
    script.chmod(0o755)
    return script, record


def bundle(tmp_path: Path, spec: dict) -> Path:
    directory = tmp_path / "bundle"
    directory.mkdir()
    (directory / "config.json").write_text(json.dumps(spec))
    return directory


@needs_jq
@pytest.mark.parametrize("form", ["--bundle", "-b", "--bundle="])
def test_runc_wrapper_drops_the_limits_and_keeps_the_devices(wrapper, tmp_path, form):
    script, record = wrapper
    directory = bundle(tmp_path, SPEC)
    where = [f"--bundle={directory}"] if form == "--bundle=" else [form, str(directory)]
    subprocess.run([str(script), "--root", "/run/x", "create", *where, "c1"], check=True)

    spec = json.loads((directory / "config.json").read_text())
    assert spec["linux"]["resources"] == {"devices": [{"allow": False, "access": "rwm"}]}
    # Everything else of the spec is as it was, and the real runc got it with the same arguments.
    assert {k: v for k, v in spec["linux"].items() if k != "resources"} == {
        "namespaces": [{"type": "pid"}]
    }
    # A negative OOM score cannot be had here: the container inherits its parent's.
    assert spec["process"] == {"args": ["/pause"]}
    assert json.loads(Path(f"{record}.spec").read_text()) == spec
    assert Path(f"{record}.args").read_text().split() == [
        "--root",
        "/run/x",
        "create",
        *where,
        "c1",
    ]


@needs_jq
def test_runc_wrapper_passes_other_commands_through_and_ignores_updates(wrapper, tmp_path):
    script, record = wrapper
    subprocess.run([str(script), "--root", "/run/x", "state", "c1"], check=True)
    assert Path(f"{record}.args").read_text().split() == ["--root", "/run/x", "state", "c1"]
    os.unlink(f"{record}.args")
    # A limit that cannot be held is not applied later either.
    subprocess.run([str(script), "update", "--memory", "1000000", "c1"], check=True)
    assert not Path(f"{record}.args").exists()


def bounding_set() -> set[str]:
    """The capabilities this process may hold, by name, read as the wrapper reads them."""
    line = next(
        row
        for row in Path("/proc/self/status").read_text().splitlines()
        if row.startswith("CapBnd:")
    )
    mask = int(line.split()[1], 16)
    names = realnode.CAPABILITIES.split()
    return {f"CAP_{name}" for bit, name in enumerate(names) if mask >> bit & 1}


@needs_jq
def test_runc_wrapper_keeps_only_the_capabilities_the_node_can_give(wrapper, tmp_path):
    script, _ = wrapper
    every = [f"CAP_{name}" for name in realnode.CAPABILITIES.split()]
    spec = {"process": {"capabilities": {"bounding": every, "effective": ["CAP_NET_ADMIN"]}}}
    directory = bundle(tmp_path, spec)
    subprocess.run([str(script), "create", "--bundle", str(directory), "c1"], check=True)
    caps = json.loads((directory / "config.json").read_text())["process"]["capabilities"]
    held = bounding_set()
    assert caps["bounding"] == [c for c in every if c in held]
    assert caps["effective"] == (["CAP_NET_ADMIN"] if "CAP_NET_ADMIN" in held else [])


@needs_jq
@pytest.mark.parametrize("form", ["--process", "-p", "--process="])
def test_runc_wrapper_edits_an_execs_process_the_same_way(wrapper, tmp_path, form):
    """A hook or probe's exec carries the container's capabilities in a process.json of its own."""
    script, record = wrapper
    every = [f"CAP_{name}" for name in realnode.CAPABILITIES.split()]
    process = tmp_path / "process.json"
    process.write_text(json.dumps({"args": ["bash"], "capabilities": {"bounding": every}}))
    where = [f"--process={process}"] if form == "--process=" else [form, str(process)]
    subprocess.run([str(script), "exec", *where, "c1"], check=True)
    edited = json.loads(process.read_text())
    assert edited == {
        "args": ["bash"],
        "capabilities": {"bounding": sorted(bounding_set(), key=every.index)},
    }
    assert Path(f"{record}.args").read_text().split() == ["exec", *where, "c1"]


@needs_jq
def test_runc_wrapper_leaves_a_spec_without_resources_alone(wrapper, tmp_path):
    script, _ = wrapper
    spec = {"ociVersion": "1.2.0", "linux": {"namespaces": []}}
    directory = bundle(tmp_path, spec)
    subprocess.run([str(script), "create", "--bundle", str(directory), "c1"], check=True)
    assert json.loads((directory / "config.json").read_text()) == spec


def test_image_layer_holds_the_programs_root_owned_and_executable(tmp_path):
    program = tmp_path / "built-agnhost"
    program.write_bytes(b"\x7fELF fake program")
    image = images.Image("x/y", "1.0", (("/usr/bin/agnhost", "agnhost"),), ("/usr/bin/agnhost",))
    layer = tmp_path / "layer.tar"
    layer.write_bytes(images._layer(image, {"agnhost": str(program)}))
    with tarfile.open(layer) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == ["usr", "usr/bin", "usr/bin/agnhost"]
        assert members["usr/bin"].isdir()
        agnhost = members["usr/bin/agnhost"]
        assert (agnhost.uid, agnhost.gid, agnhost.mode) == (0, 0, 0o755)
        assert tar.extractfile(agnhost).read() == b"\x7fELF fake program"


def sim_config(tmp_path: Path) -> SimConfig:
    return SimConfig(
        home=str(tmp_path),
        bridge="cilx",
        subnet="10.254.7.0/24",
        nodes=["control0", "worker0"],
        control_plane=True,
        data_plane="real",
    )


def test_kubelet_configuration_is_the_nodes_and_holds_no_qos_cgroups(tmp_path):
    cfg = sim_config(tmp_path)
    config = yaml.safe_load(realnode.kubelet_config(cfg, "worker0", "10.32.0.10"))
    assert config["kind"] == "KubeletConfiguration"
    assert config["podCIDR"] == "10.2.0.0/16"
    assert config["clusterDNS"] == ["10.32.0.10"]
    assert (config["cgroupsPerQOS"], config["enforceNodeAllocatable"]) == (False, [])
    assert config["cgroupDriver"] == "cgroupfs"
    dropin = realnode.kubelet_dropin(cfg, "worker0")
    assert "--node-ip=10.254.7.12" in dropin


def test_kube_proxy_keeps_the_guides_configuration_and_leaves_conntrack_sizes_alone():
    files = realnode.kube_proxy_files(KUBE_PROXY_CONFIG, "kubeconfig: x")
    mode, text = files["/var/lib/kube-proxy/kube-proxy-config.yaml"]
    config = yaml.safe_load(text)
    guide = yaml.safe_load(KUBE_PROXY_CONFIG)
    assert {k: v for k, v in config.items() if k != "conntrack"} == guide
    assert config["conntrack"]["maxPerCore"] == 0
    assert files["/var/lib/kube-proxy/kubeconfig"] == (0o600, b"kubeconfig: x")


def test_containerd_pulls_from_the_sims_registry_over_http(tmp_path):
    cfg = sim_config(tmp_path)
    registry = images.registry_address(cfg)
    assert registry == "10.254.7.1:5000"
    hosts = realnode.registry_hosts_toml(registry)
    assert 'server = "http://10.254.7.1:5000"' in hosts
    assert images.image_ref(cfg, "pause") == f"{registry}/pause:1.34.4"
    config = tomllib.loads(realnode.containerd_config(images.image_ref(cfg, "pause")))
    plugins = config["plugins"]
    assert plugins["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == (
        f"{registry}/pause:1.34.4"
    )
    runc = plugins["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"]["runc"]
    assert runc["options"] == {"BinaryName": "/usr/local/bin/runc", "SystemdCgroup": False}
    assert tomllib.loads(hosts)["host"]["http://10.254.7.1:5000"]["capabilities"] == [
        "pull",
        "resolve",
    ]

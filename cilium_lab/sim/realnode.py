"""
The real data plane on a node: the guide's kubelet, containerd and kube-proxy as real programs
(built from their Go modules, see :func:`cilium_lab.sim.binaries.node_components`), runc under
containerd, and the CNI plugins the guide's ``10-bridge.conf`` names.

What the node gets beside the guide's files:

- the programs, bound read-only where the guide puts them (``/usr/local/bin``, ``/opt/cni/bin``);
- the kubelet's and kube-proxy's configuration and kubeconfigs (client certificates of the
  sim's authority: ``system:node:NAME`` in ``system:nodes``, ``system:kube-proxy``);
- containerd's configuration, pulling through a registry host configuration from the sim's own
  registry (:mod:`cilium_lab.sim.images`), as an air-gapped cluster does;
- a directory of this machine's file system for containerd's state: its overlay snapshots
  cannot live on the node's own overlay root.

Stand-ins for what this machine lacks (each named in the README), none of them in the deploy:

- **cgroup controllers.** The cgroup2 the nodes see has none, so runc cannot set a CPU or memory
  limit (``cpu.weight`` does not exist). ``/usr/local/bin/runc`` is a wrapper that drops the
  limits (and a negative OOM score: this machine withholds CAP_SYS_RESOURCE even from its
  root) from each container's spec before the real runc creates it, and the kubelet runs
  without QoS cgroups (``cgroupsPerQOS: false``) and enforces no node allocatable. cgroup v2
  itself stays, so Cilium's ``cgroup.hostRoot`` and the preflight's cgroup check stay real.
- **the machine's kernel settings.** At start the kubelet sets ``vm.overcommit_memory``,
  ``kernel.panic`` and ``kernel.panic_on_oops`` where they differ from what it wants; those are
  this whole machine's, so the node reads them from files of its own that already say so.
- **/dev/kmsg**, which the kubelet's OOM watcher opens, is this machine's, bound read-only.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from cilium_lab.sim import images
from cilium_lab.sim.config import SimConfig
from cilium_lab.sim.rootfs import KUBE_PROXY_CONFIG

NODE_BIN = "/usr/local/bin"
CNI_BIN = "/opt/cni/bin"
# The real runc, beside the wrapper that takes its place in NODE_BIN.
REAL_RUNC = "/usr/local/lib/cilium-lab/runc"
KUBELET_DIR = "/var/lib/kubelet"
KUBE_PROXY_DIR = "/var/lib/kube-proxy"
NODE_PKI = "/var/lib/kubernetes"
CONTAINERD_STATE = "/var/lib/containerd"

# Which built program goes where in the node.
PROGRAM_PATHS = {
    "kubelet": f"{NODE_BIN}/kubelet",
    "kube-proxy": f"{NODE_BIN}/kube-proxy",
    "containerd": f"{NODE_BIN}/containerd",
    "containerd-shim-runc-v2": f"{NODE_BIN}/containerd-shim-runc-v2",
    "ctr": f"{NODE_BIN}/ctr",
    **{plugin: f"{CNI_BIN}/{plugin}" for plugin in ("bridge", "host-local", "loopback", "portmap")},
}

# What the kubelet wants these to be (pkg/kubelet/cm/container_manager_linux.go,
# setupKernelTunables); the node reads them from files that say so.
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}

# The capabilities by their numbers (linux/capability.h), to read a bounding set.
CAPABILITIES = (
    "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE "
    "NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO "
    "SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME "
    "SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG "
    "WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE"
)

# The runc wrapper: every limit goes from the container's spec, as no controller is there to
# hold it; devices stay (cgroup v2 filters them with an eBPF program, no controller needed). A
# negative OOM score goes too: lowering one needs CAP_SYS_RESOURCE, which this machine's root
# does not have to give (containerd's sandboxes ask for -998); for the same reason, so do the
# capabilities the node's bounding set lacks (Cilium's agent asks for CAP_SYS_RESOURCE, a
# privileged container for all). The seccomp profile goes as well: runc is built without
# libseccomp (a static cgo build with nothing but the C library).
RUNC_WRAPPER = rf"""#!/bin/sh
# cilium-lab sim: a stand-in for the cgroup controllers this machine does not give its nodes.
# Drops linux.resources' limits from the bundle's config.json, and what the node cannot grant
# from it and from an exec's process.json, then runs the real runc.
set -eu
bundle=""
process=""
prev=""
for arg in "$@"; do
    case "$prev" in --bundle|-b) bundle=$arg ;; --process|-p) process=$arg ;; esac
    case "$arg" in --bundle=*) bundle=${{arg#--bundle=}} ;; --process=*) process=${{arg#--process=}} ;; esac
    prev=$arg
done
held() {{
    bounding=$((0x$(awk '/^CapBnd:/ {{print $2}}' /proc/self/status)))
    names=""
    bit=0
    for name in {CAPABILITIES}; do
        if [ $(((bounding >> bit) & 1)) -eq 1 ]; then names="$names CAP_$name"; fi
        bit=$((bit + 1))
    done
    echo "$names"
}}
# Edit a JSON file in place with jq, the capabilities the node holds as $held.
edit() {{
    file=$1
    program=$2
    # shellcheck disable=SC2016
    jq --arg held "$(held)" '($held | split(" ") | map(select(. != ""))) as $held | '"$program" \
        "$file" >"$file.cilium-lab"
    mv "$file.cilium-lab" "$file"
}}
# shellcheck disable=SC2016
process_filter='if (.oomScoreAdj // 0) < 0 then del(.oomScoreAdj) else . end
    | if .capabilities then .capabilities |= map_values(map(select(IN($held[])))) else . end'
if [ -n "$bundle" ] && [ -f "$bundle/config.json" ]; then
    edit "$bundle/config.json" "if .linux.resources then .linux.resources |= {{devices: .devices}} else . end
        | if .process then .process |= ($process_filter) else . end
        | del(.linux.seccomp)"
fi
if [ -n "$process" ] && [ -f "$process" ]; then
    edit "$process" "$process_filter"
fi
case " $* " in
    *" update "*) exit 0 ;;
esac
exec {REAL_RUNC} "$@"
"""


def containerd_config(sandbox_image: str) -> str:
    """containerd 2.x's configuration: CRI with runc (cgroupfs) and the guide's CNI paths."""
    return f"""version = 3
root = "{CONTAINERD_STATE}"
state = "/run/containerd"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{sandbox_image}"
  [plugins."io.containerd.cri.v1.images".registry]
    config_path = "/etc/containerd/certs.d"

[plugins."io.containerd.cri.v1.runtime".cni]
  bin_dirs = ["{CNI_BIN}"]
  conf_dir = "/etc/cni/net.d"

[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "runc"
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
      BinaryName = "{NODE_BIN}/runc"
      SystemdCgroup = false
"""


def registry_hosts_toml(registry: str) -> str:
    """containerd's host configuration for the sim's registry: plain HTTP on the bridge."""
    return (
        f'server = "http://{registry}"\n\n[host."http://{registry}"]\n'
        '  capabilities = ["pull", "resolve"]\n'
    )


def kubelet_config(cfg: SimConfig, name: str, dns_ip: str) -> str:
    config = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": f"{NODE_PKI}/ca.pem"},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDomain": "cluster.local",
        "clusterDNS": [dns_ip],
        "containerRuntimeEndpoint": "unix:///run/containerd/containerd.sock",
        "cgroupDriver": "cgroupfs",
        "podCIDR": cfg.pod_cidr(name),
        "resolvConf": "/etc/resolv.conf",
        "runtimeRequestTimeout": "15m",
        "failSwapOn": False,
        # Stand-ins for the cgroup controllers (module docstring).
        "cgroupsPerQOS": False,
        "enforceNodeAllocatable": [],
        # The nodes share this machine's disk: eviction thresholds would see its use, not theirs.
        "evictionHard": {
            "memory.available": "0%",
            "nodefs.available": "0%",
            "imagefs.available": "0%",
        },
        "imageGCHighThresholdPercent": 100,
        "registerNode": True,
    }
    return yaml.safe_dump(config, sort_keys=False)


def kubelet_dropin(cfg: SimConfig, name: str) -> str:
    """The node's address for the kubelet (the guide's unit leaves it to the kubelet to find)."""
    return (
        "# cilium-lab sim: the node's address on the bridge.\n[Service]\nExecStart=\n"
        f"ExecStart={NODE_BIN}/kubelet --config={KUBELET_DIR}/kubelet-config.yaml "
        f"--kubeconfig={KUBELET_DIR}/kubeconfig --node-ip={cfg.address(name)} --v=2\n"
    )


def kube_proxy_files(guide_config: str, kubeconfig: str) -> dict[str, tuple[int, bytes]]:
    """The guide's kube-proxy configuration, with conntrack's machine-wide sizes left alone."""
    config = yaml.safe_load(guide_config)
    # A stand-in, as kind's nodes have it: nf_conntrack_max and the TCP timeouts are this
    # machine's, not writable from a node's network namespace; 0 tells kube-proxy to keep them.
    config["conntrack"] = {
        "maxPerCore": 0,
        "min": 0,
        "tcpEstablishedTimeout": "0s",
        "tcpCloseWaitTimeout": "0s",
    }
    return {
        f"{KUBE_PROXY_DIR}/kubeconfig": (0o600, kubeconfig.encode()),
        f"{KUBE_PROXY_DIR}/kube-proxy-config.yaml": (
            0o644,
            yaml.safe_dump(config, sort_keys=False).encode(),
        ),
    }


def node_files(
    cfg: SimConfig,
    name: str,
    kubelet_kubeconfig: str,
    kube_proxy_kubeconfig: str,
    ca: bytes,
    dns_ip: str,
) -> dict[str, tuple[int, bytes]]:
    """What a real node needs beside the guide's files (path -> mode, content)."""
    registry = images.registry_address(cfg)
    return {
        f"{KUBELET_DIR}/kubeconfig": (0o600, kubelet_kubeconfig.encode()),
        f"{KUBELET_DIR}/kubelet-config.yaml": (0o644, kubelet_config(cfg, name, dns_ip).encode()),
        "/etc/systemd/system/kubelet.service.d/10-sim.conf": (
            0o644,
            kubelet_dropin(cfg, name).encode(),
        ),
        f"{NODE_PKI}/ca.pem": (0o644, ca),
        **kube_proxy_files(KUBE_PROXY_CONFIG, kube_proxy_kubeconfig),
        "/etc/containerd/config.toml": (
            0o644,
            containerd_config(images.image_ref(cfg, "pause")).encode(),
        ),
        f"/etc/containerd/certs.d/{registry}/hosts.toml": (
            0o644,
            registry_hosts_toml(registry).encode(),
        ),
        f"{NODE_BIN}/runc": (0o755, RUNC_WRAPPER.encode()),
        # runc seals its own binary with an overlay before it runs a container, and what it
        # seals from a read-only bind will not execute: the node gets a copy of its own.
        REAL_RUNC: (0o755, Path(cfg.node_programs["runc"]).read_bytes()),
        **{
            sysctl_path(key): (0o444, f"{value}\n".encode())
            for key, value in KUBELET_SYSCTLS.items()
        },
    }


# Where the node keeps the files that stand in for those sysctls. nspawn resolves the source of
# a bind onto /proc inside the node's own root, so they are the node's files, not this machine's.
SYSCTL_DIR = "/usr/local/lib/cilium-lab/sysctl"


def sysctl_path(key: str) -> str:
    return f"{SYSCTL_DIR}/{key.replace('/', '.')}"


def nspawn_arguments(cfg: SimConfig, name: str) -> list[str]:
    """systemd-nspawn's options for a node that runs real containers and Cilium's agent."""
    node = cfg.node_dir(name)
    state = node / "containerd"
    state.mkdir(parents=True, exist_ok=True)
    bpffs = node / "bpffs"
    bpffs.mkdir(parents=True, exist_ok=True)
    return [
        # runc, the kubelet and Cilium's agent need the capabilities a real node's root has,
        # and bpf() (refused by nspawn's default filter).
        "--capability=all",
        "--system-call-filter=bpf perf_event_open keyctl add_key request_key",
        f"--bind={state}:{CONTAINERD_STATE}",
        # nspawn's /sys has no fs/bpf: a directory of the node's own, where the chart's
        # mount-bpf-fs init container mounts bpffs (and the agent pins its maps).
        f"--bind={bpffs}:/sys/fs/bpf",
        "--bind-ro=/dev/kmsg",
        *(f"--bind-ro={sysctl_path(key)}:/proc/sys/{key}" for key in KUBELET_SYSCTLS),
        *(
            f"--bind-ro={path}:{PROGRAM_PATHS[program]}"
            for program, path in sorted(cfg.node_programs.items())
            if program in PROGRAM_PATHS
        ),
    ]


# systemd-nspawn's environment for such a node: /proc/sys/net writable in its own namespace.
NSPAWN_ENV = {"SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"}

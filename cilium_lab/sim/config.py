"""Where the sim keeps its state, what it is called on the network, and which nodes it has."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from cilium_lab.sim import SimError

DEFAULT_HOME = Path("/var/lib/cilium-lab")
DEFAULT_BRIDGE = "cilab0"
DEFAULT_SUBNET = "10.251.0.0/24"
# The root filesystem is shared by every sim on the machine (it is only ever a read-only lower
# layer), so an e2e run with its own home does not pay for a second debootstrap.
DEFAULT_CACHE = Path("/var/cache/cilium-lab")
# The control plane's versions. Kubernetes 1.34 is inside the pinned Cilium's tested range
# (group data: cilium_chart_version); kwok 0.8 is the newest release this machine's Go builds.
KUBERNETES_VERSION = "v1.34.4"
ETCD_VERSION = "v3.6.8"
KWOK_VERSION = "v0.8.0"
# The real data plane's programs, by upstream project: the nodes' kubelet, kube-proxy, containerd,
# runc and CNI plugins; the registry and image tool (crane); the images' CoreDNS, agnhost and
# pause; Cilium's agent and operator (the release the group data pins: cilium_chart_version).
NODE_VERSIONS = {
    "kubernetes": KUBERNETES_VERSION,
    "containerd": "v2.4.2",
    "runc": "v1.5.3",
    "cni-plugins": "v1.10.0",
    "crane": "v0.22.1",
    "coredns": "v1.15.0",
}
API_PORT = 6443  # LAB.md: the API server listens on 6443
# Like the guide's 192.168.1.11-16: the bridge takes .1, nodes start at .11.
FIRST_NODE_HOST = 11
# Bridge names are kernel interface names (15 chars); each node's host-side veth is the bridge
# name plus "v" and up to three digits.
BRIDGE_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,10}$")


def home() -> Path:
    return Path(os.environ.get("CILIUM_LAB_SIM_HOME") or DEFAULT_HOME)


def cache_dir() -> Path:
    return Path(os.environ.get("CILIUM_LAB_SIM_CACHE") or DEFAULT_CACHE)


def default_bridge() -> str:
    if "CILIUM_LAB_SIM_BRIDGE" in os.environ:
        return os.environ["CILIUM_LAB_SIM_BRIDGE"]
    if home() == DEFAULT_HOME:
        return DEFAULT_BRIDGE
    # Another home is another sim: give it a bridge of its own so both can run at once.
    return "cil" + hashlib.sha256(str(home().resolve()).encode()).hexdigest()[:6]


def default_subnet() -> str:
    return os.environ.get("CILIUM_LAB_SIM_SUBNET") or DEFAULT_SUBNET


def node_names(count: int) -> list[str]:
    """The guide's three control nodes first, then workers: control0-2, worker0, worker1, ..."""
    controls = min(count, 3)
    return [f"control{i}" for i in range(controls)] + [
        f"worker{i}" for i in range(count - controls)
    ]


def pod_cidr(index: int) -> str:
    # LAB.md: node i (0-based, control0 first) owns 10.(i+1).0.0/16.
    return f"10.{index + 1}.0.0/16"


@dataclass
class SimConfig:
    """One sim's settings, fixed by ``sim up`` and kept in ``<home>/state.json`` until ``down``."""

    home: str
    bridge: str
    subnet: str
    nodes: list[str]
    rootfs: str = ""
    inventory: str = ""
    # With a control plane: the programs bound into every node (name -> path on this machine),
    # the chart repository the workstation uses, and the routes `up` added on this machine.
    control_plane: bool = False
    programs: dict = field(default_factory=dict)
    charts_dir: str = ""
    helm_repo_url: str = ""
    chart_server_pid: int = 0
    routes: list = field(default_factory=list)
    # "kwok" (kwok plays the kubelets; no container runs) or "real" (real kubelets, containerd
    # and kube-proxy; the pods run: cilium_lab.sim.realnode), with the programs that needs
    # (name -> path on this machine) and the registry the nodes pull from.
    data_plane: str = "kwok"
    node_programs: dict = field(default_factory=dict)
    registry_pid: int = 0

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.ip_network(self.subnet)

    @property
    def bridge_address(self) -> ipaddress.IPv4Address:
        return self.network[1]

    def index(self, name: str) -> int:
        try:
            return self.nodes.index(name)
        except ValueError:
            raise SimError(
                f"no node named {name!r} in the sim (nodes: {', '.join(self.nodes)})"
            ) from None

    def address(self, name: str) -> ipaddress.IPv4Address:
        return self.network[FIRST_NODE_HOST + self.index(name)]

    def pod_cidr(self, name: str) -> str:
        return pod_cidr(self.index(name))

    def is_control(self, name: str) -> bool:
        return name.startswith("control")

    @property
    def api_node(self) -> str:
        """The node that runs etcd and the control plane (the first control node)."""
        return next((n for n in self.nodes if self.is_control(n)), self.nodes[0])

    @property
    def api_server(self) -> str:
        return f"https://{self.address(self.api_node)}:{API_PORT}"

    # Kernel-wide names: prefixed by the bridge so that two sims never share one.
    def netns(self, name: str) -> str:
        return f"{self.bridge}-{name}"

    def machine(self, name: str) -> str:
        return f"{self.bridge}-{name}"

    def host_veth(self, name: str) -> str:
        return f"{self.bridge}v{self.index(name)}"

    # Files.
    @property
    def path(self) -> Path:
        return Path(self.home)

    def node_dir(self, name: str) -> Path:
        return self.path / "nodes" / name

    @property
    def ssh_key(self) -> Path:
        return self.path / "ssh" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.path / "ssh" / "known_hosts"

    @property
    def pki_dir(self) -> Path:
        return self.path / "pki"

    @property
    def kubeconfig(self) -> Path:
        """The workstation's kubeconfig (an administrator's)."""
        return self.path / "kubeconfig"

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    def save(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(self.state_file)

    @classmethod
    def load(cls, sim_home: Path | None = None) -> SimConfig | None:
        state = (sim_home or home()) / "state.json"
        if not state.exists():
            return None
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in json.loads(state.read_text()).items() if k in known})


def validate(bridge: str, subnet: str, count: int) -> ipaddress.IPv4Network:
    """Check settings before anything changes; raise SimError naming the bad one."""
    if not BRIDGE_NAME_RE.match(bridge):
        raise SimError(
            f"bad bridge name {bridge!r}: 1-11 characters, a-z and 0-9, starting with a letter"
        )
    if not 1 <= count <= 250:
        raise SimError(
            f"bad node count {count}: 1 to 250 (pod CIDRs are 10.1.0.0/16 to 10.250.0.0/16)"
        )
    try:
        network = ipaddress.ip_network(subnet)
    except ValueError as e:
        raise SimError(f"bad subnet {subnet!r}: {e}") from None
    if network.version != 4:
        raise SimError(f"bad subnet {subnet}: IPv4 only")
    if network.num_addresses < FIRST_NODE_HOST + count + 1:
        raise SimError(
            f"subnet {subnet} is too small for {count} nodes (addresses from .{FIRST_NODE_HOST})"
        )
    for i in range(count):
        if network.overlaps(ipaddress.ip_network(pod_cidr(i))):
            raise SimError(f"subnet {subnet} overlaps node {i}'s pod CIDR {pod_cidr(i)}")
    return network

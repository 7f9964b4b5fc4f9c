"""
The control plane as the guide runs it: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler with the guide's flags where they apply, and kwok playing each node's kubelet.

This module only says how: certificates and kubeconfigs in a directory, and each program's
command line. The sim runs those command lines as systemd units inside its nodes (etcd and the
control plane on control0, kwok as every node's ``kubelet.service``); the cluster tests run the
same command lines as processes on loopback.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import yaml

from cilium_lab.sim import kwok, pki, realnode, workloads
from cilium_lab.sim.config import API_PORT, SimConfig

# The guide's service range; its first address is the `kubernetes` Service's.
SERVICE_CIDR = "10.32.0.0/24"
SERVICE_IP = "10.32.0.1"
# How long a node may miss its heartbeat before the node controller marks it NotReady. Upstream's
# 50s default would make `sim stop NODE` take a minute to show; kwok renews its lease every few.
NODE_MONITOR_GRACE = "16s"

# Who may use the API: user (CN) and group (O) of each client certificate.
ADMIN = ("admin", "system:masters")
CONTROLLER_MANAGER = ("system:kube-controller-manager", None)
SCHEDULER = ("system:kube-scheduler", None)
# RBAC's bootstrap binding system:node-proxier names this user.
KUBE_PROXY = ("system:kube-proxy", None)
APISERVER_KUBELET_CLIENT = ("kube-apiserver-kubelet-client", "system:masters")


def kubelet_user(node: str) -> tuple[str, str]:
    # The Node authorizer and NodeRestriction know a kubelet by this name and group.
    return (f"system:node:{node}", "system:nodes")


def kwok_user(node: str) -> tuple[str, str]:
    # kwok reads and writes more than the Node authorizer lets a kubelet (it is not one): it gets
    # an administrator's group, and a name that says whose kubelet it plays.
    return (f"kwok:{node}", "system:masters")


@dataclass
class Layout:
    """Where one control plane keeps its files and listens, as its programs see them."""

    pki: Path  # certificates, keys and kubeconfigs
    etcd_data: Path
    bin: dict[str, str]  # program name -> path
    advertise: str  # the API server's address for the cluster (its Service's endpoint)
    bind: str = "0.0.0.0"
    api_port: int = API_PORT
    etcd_client_port: int = 2379
    etcd_peer_port: int = 2380
    # False switches the controller manager's and scheduler's own HTTPS endpoints off
    # (--secure-port=0): the tests run several control planes side by side.
    component_ports: bool = True

    def file(self, name: str) -> str:
        return str(self.pki / name)


# Certificates and kubeconfigs.


def write_pki(
    directory: Path, api_names: list[str], api_addresses: list[str], nodes: list[str]
) -> None:
    """Every certificate and key the control plane and its clients use, in the guide's file names."""
    ca = pki.Authority.create()
    pki.write(ca.pair, directory, "ca")
    names = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
        *api_names,
    ]
    addresses = [SERVICE_IP, "127.0.0.1", *api_addresses]
    pki.write(
        ca.issue("kubernetes", server_names=names, server_addresses=addresses, client=False),
        directory,
        "kubernetes",
    )
    pki.write(pki.service_account_pair(), directory, "service-account")
    for user, group, name in (
        (*ADMIN, "admin"),
        (*CONTROLLER_MANAGER, "kube-controller-manager"),
        (*SCHEDULER, "kube-scheduler"),
        *((*kwok_user(node), f"kwok-{node}") for node in nodes),
        # The real data plane's clients: each node's kubelet, kube-proxy, and the API server
        # itself when it reaches a kubelet (logs, exec).
        *((*kubelet_user(node), f"kubelet-{node}") for node in nodes),
        (*KUBE_PROXY, "kube-proxy"),
        (*APISERVER_KUBELET_CLIENT, "kube-apiserver-kubelet-client"),
    ):
        pki.write(ca.issue(user, group), directory, name)


def kubeconfig(server: str, directory: Path, name: str, cluster: str = "cilium-lab-sim") -> str:
    """A kubeconfig for the client ``name`` (``name.pem`` in ``directory``), certificates inline."""

    def data(filename: str) -> str:
        return base64.b64encode((directory / filename).read_bytes()).decode()

    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": cluster,
                    "cluster": {"server": server, "certificate-authority-data": data("ca.pem")},
                }
            ],
            "users": [
                {
                    "name": name,
                    "user": {
                        "client-certificate-data": data(f"{name}.pem"),
                        "client-key-data": data(f"{name}-key.pem"),
                    },
                }
            ],
            "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": name}}],
            "current-context": cluster,
        },
        sort_keys=False,
    )


def write_kubeconfig(path: Path, server: str, directory: Path, name: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(kubeconfig(server, directory, name))
    return path


# Command lines.


def etcd(layout: Layout, name: str = "etcd") -> list[str]:
    client = f"http://127.0.0.1:{layout.etcd_client_port}"
    peer = f"http://127.0.0.1:{layout.etcd_peer_port}"
    # One member, on loopback beside the API server: the guide's TLS between them guards a
    # network this single-member etcd never uses.
    return [
        layout.bin["etcd"],
        f"--name={name}",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client}",
        f"--advertise-client-urls={client}",
        f"--listen-peer-urls={peer}",
        f"--initial-advertise-peer-urls={peer}",
        f"--initial-cluster={name}={peer}",
        "--initial-cluster-state=new",
        "--log-level=warn",
    ]


def apiserver(layout: Layout) -> list[str]:
    f = layout.file
    return [
        layout.bin["kube-apiserver"],
        f"--advertise-address={layout.advertise}",
        # Cilium's agents are privileged pods.
        "--allow-privileged=true",
        "--authorization-mode=Node,RBAC",
        f"--bind-address={layout.bind}",
        f"--secure-port={layout.api_port}",
        f"--client-ca-file={f('ca.pem')}",
        "--enable-admission-plugins=NamespaceLifecycle,NodeRestriction,LimitRanger,ServiceAccount,"
        "DefaultStorageClass,ResourceQuota",
        f"--etcd-servers=http://127.0.0.1:{layout.etcd_client_port}",
        "--event-ttl=1h",
        "--runtime-config=api/all=true",
        f"--service-account-key-file={f('service-account.pem')}",
        f"--service-account-signing-key-file={f('service-account-key.pem')}",
        f"--service-account-issuer=https://kubernetes:{layout.api_port}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--service-node-port-range=30000-32767",
        f"--kubelet-client-certificate={f('kube-apiserver-kubelet-client.pem')}",
        f"--kubelet-client-key={f('kube-apiserver-kubelet-client-key.pem')}",
        f"--tls-cert-file={f('kubernetes.pem')}",
        f"--tls-private-key-file={f('kubernetes-key.pem')}",
        "--v=1",
    ]


def controller_manager(layout: Layout) -> list[str]:
    f = layout.file
    argv = [
        layout.bin["kube-controller-manager"],
        f"--bind-address={layout.bind}",
        "--cluster-name=kubernetes",
        f"--cluster-signing-cert-file={f('ca.pem')}",
        f"--cluster-signing-key-file={f('ca-key.pem')}",
        f"--kubeconfig={f('kube-controller-manager.kubeconfig')}",
        # One instance: no lease to wait for after a restart.
        "--leader-elect=false",
        f"--root-ca-file={f('ca.pem')}",
        f"--service-account-private-key-file={f('service-account-key.pem')}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--use-service-account-credentials=true",
        # Nodes have their pod CIDRs from the guide's data, as the guide's kubelets set them.
        "--allocate-node-cidrs=false",
        f"--node-monitor-grace-period={NODE_MONITOR_GRACE}",
        "--node-monitor-period=2s",
        "--v=1",
    ]
    if not layout.component_ports:
        argv.append("--secure-port=0")
    return argv


def scheduler(layout: Layout) -> list[str]:
    argv = [
        layout.bin["kube-scheduler"],
        f"--kubeconfig={layout.file('kube-scheduler.kubeconfig')}",
        "--leader-elect=false",
        "--v=1",
    ]
    if not layout.component_ports:
        argv.append("--secure-port=0")
    return argv


def unit(description: str, argv: list[str], after: tuple[str, ...] = ()) -> str:
    """A systemd unit running ``argv``, restarted on failure, wanted by multi-user.target."""
    order = f"After={' '.join(after)}\nWants={' '.join(after)}\n" if after else ""
    command = " \\\n  ".join(argv)
    return (
        f"[Unit]\nDescription={description}\nDocumentation=https://github.com/kubernetes/kubernetes\n{order}\n"
        f"[Service]\nExecStart={command}\nRestart=on-failure\nRestartSec=2\n\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )


# The control plane inside the sim's nodes, at the guide's paths.

NODE_BIN = "/usr/local/bin"
NODE_PKI = Path("/var/lib/kubernetes")
UNITS = {
    "etcd.service": ("etcd", ()),
    "kube-apiserver.service": ("Kubernetes API Server", ("etcd.service",)),
    "kube-controller-manager.service": (
        "Kubernetes Controller Manager",
        ("kube-apiserver.service",),
    ),
    "kube-scheduler.service": ("Kubernetes Scheduler", ("kube-apiserver.service",)),
}


def node_layout(cfg: SimConfig) -> Layout:
    return Layout(
        pki=NODE_PKI,
        etcd_data=Path("/var/lib/etcd"),
        bin={program: f"{NODE_BIN}/{program}" for program in cfg.programs},
        advertise=str(cfg.address(cfg.api_node)),
    )


def write_sim_pki(cfg: SimConfig) -> None:
    """The sim's certificates and the workstation's kubeconfig, on this machine, once."""
    if (cfg.pki_dir / "ca.pem").exists():
        return
    write_pki(cfg.pki_dir, [cfg.api_node], [str(cfg.address(cfg.api_node))], cfg.nodes)
    write_kubeconfig(cfg.kubeconfig, cfg.api_server, cfg.pki_dir, "admin")


def node_files(cfg: SimConfig, name: str) -> tuple[dict[str, tuple[int, bytes]], dict[str, str]]:
    """What a node needs beside the guide's state: kwok as its kubelet and, on the API node,
    etcd and the control plane as enabled units. Returns (files, symbolic links)."""
    files: dict[str, tuple[int, bytes]] = {}
    links: dict[str, str] = {}
    if cfg.data_plane == "real":
        api = f"https://kubernetes:{API_PORT}"
        files.update(
            realnode.node_files(
                cfg,
                name,
                kubelet_kubeconfig=kubeconfig(api, cfg.pki_dir, f"kubelet-{name}"),
                kube_proxy_kubeconfig=kubeconfig(api, cfg.pki_dir, "kube-proxy"),
                ca=(cfg.pki_dir / "ca.pem").read_bytes(),
                dns_ip=workloads.DNS_IP,
            )
        )
    else:
        kubelet = "/var/lib/kubelet"
        stages = f"{kubelet}/kwok-stages.yaml"
        files[f"{kubelet}/kubeconfig"] = (
            0o600,
            kubeconfig(f"https://kubernetes:{API_PORT}", cfg.pki_dir, f"kwok-{name}").encode(),
        )
        files[stages] = (0o644, kwok.STAGES.encode())
        command = kwok.argv(
            f"{NODE_BIN}/kwok", f"{kubelet}/kubeconfig", stages, name, str(cfg.address(name))
        )
        files["/etc/systemd/system/kubelet.service.d/10-kwok.conf"] = (
            0o644,
            kwok.kubelet_dropin(command).encode(),
        )
    if name != cfg.api_node:
        return files, links

    layout = node_layout(cfg)
    for filename in (
        "ca.pem",
        "ca-key.pem",
        "kubernetes.pem",
        "kubernetes-key.pem",
        "service-account.pem",
        "service-account-key.pem",
        "kube-apiserver-kubelet-client.pem",
        "kube-apiserver-kubelet-client-key.pem",
    ):
        files[str(NODE_PKI / filename)] = (0o600, (cfg.pki_dir / filename).read_bytes())
    local = f"https://127.0.0.1:{layout.api_port}"
    for client in ("kube-controller-manager", "kube-scheduler"):
        files[str(NODE_PKI / f"{client}.kubeconfig")] = (
            0o600,
            kubeconfig(local, cfg.pki_dir, client).encode(),
        )
    commands = {
        "etcd.service": etcd(layout, name),
        "kube-apiserver.service": apiserver(layout),
        "kube-controller-manager.service": controller_manager(layout),
        "kube-scheduler.service": scheduler(layout),
    }
    for unit_name, (description, after) in UNITS.items():
        files[f"/etc/systemd/system/{unit_name}"] = (
            0o644,
            unit(description, commands[unit_name], after).encode(),
        )
        links[f"/etc/systemd/system/multi-user.target.wants/{unit_name}"] = (
            f"/etc/systemd/system/{unit_name}"
        )
    return files, links

"""
The whole sim: bring it up (nodes, control plane, the guide's cluster objects, chart
repository, the workstation's routes), start and stop nodes, show it, take it down.

Every check that can fail runs before the first change: settings, tools, the programs (or Go to
build them), the chart repository. Building the programs only fills the cache.
"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click

from cilium_lab.cluster import ClusterError, kube
from cilium_lab.sim import (
    SimError,
    binaries,
    charts,
    cilium_images,
    controlplane,
    guide,
    images,
    network,
    rootfs,
    workloads,
)
from cilium_lab.sim.config import (
    ETCD_VERSION,
    KUBERNETES_VERSION,
    KWOK_VERSION,
    NODE_VERSIONS,
    SimConfig,
    default_bridge,
    default_subnet,
    home,
    node_names,
    validate,
)
from cilium_lab.sim.inventory import (
    cilium_version,
    default_inventory_path,
    group_data_value,
    write_inventory,
)
from cilium_lab.sim.nodes import (
    booted,
    check_platform,
    locked,
    mounted,
    nspawn_pid,
    preflight,
    raise_inotify_limits,
    ssh_login,
    start_node,
    stop_nodes,
    wait_ready,
)

API_TIMEOUT = 180.0  # seconds for the API server and the guide's pods after the nodes booted
# Real kubelets pull every image from the sim's registry and start the containers first.
REAL_WORKLOADS_TIMEOUT = 600.0
NODE_STATE_TIMEOUT = 90.0  # seconds for a Node to show Ready or NotReady after `sim start/stop`


def load() -> SimConfig:
    check_platform()
    cfg = SimConfig.load()
    if cfg is None:
        raise SimError(f"the sim is not up (no state in {home()}); run: cilium-lab sim up")
    return cfg


def _components() -> list[binaries.Component]:
    return binaries.components(KUBERNETES_VERSION, ETCD_VERSION, KWOK_VERSION)


def _node_components(cfg: SimConfig) -> list[binaries.Component]:
    """The real data plane's programs, Cilium's for its images among them (none for the kwok lab)."""
    if cfg.data_plane != "real":
        return []
    return binaries.node_components(NODE_VERSIONS) + binaries.cilium_components(cilium_version())


def _registry(cfg: SimConfig, echo) -> None:
    """The real data plane's registry on the bridge, with every image in it."""
    if cfg.data_plane != "real" or images.running(cfg.registry_pid):
        return
    crane = cfg.node_programs["crane"]
    cfg.registry_pid = images.serve(cfg, crane)
    cfg.save()
    images.provide(cfg, crane, cfg.node_programs, echo)
    cilium_images.provide(cfg, crane, cfg.node_programs, cilium_version(), echo)


def _client(cfg: SimConfig) -> kube.Cluster:
    try:
        return kube.load(str(cfg.kubeconfig))
    except ClusterError as error:
        raise SimError(str(error)) from None


def _node_specs(cfg: SimConfig) -> list[workloads.NodeSpec]:
    return [
        workloads.NodeSpec(name, str(cfg.address(name)), cfg.pod_cidr(name), cfg.is_control(name))
        for name in cfg.nodes
    ]


def _chart_source(charts_dir: Path | None) -> str:
    """Before any change: the charts directory is a repository, or the official one answers."""
    if charts_dir is not None:
        charts.check_dir(charts_dir)
        return ""
    url = group_data_value("local", "helm_repo_url")
    charts.check_official(url)
    return url


def up(
    count: int | None = None,
    bridge: str | None = None,
    subnet: str | None = None,
    inventory: Path | None = None,
    timeout: float = 180,
    control_plane: bool = True,
    charts_dir: Path | None = None,
    bin_dir: Path | None = None,
    data_plane: str = "real",
    echo=click.echo,
) -> SimConfig:
    check_platform()
    sim_home = home()
    existing = SimConfig.load(sim_home)
    if existing is not None:
        return _up_again(existing, count, bridge, subnet, control_plane, timeout, echo)

    count = 6 if count is None else count
    bridge = bridge or default_bridge()
    subnet = subnet or default_subnet()
    validate(bridge, subnet, count)
    inventory = Path(inventory or default_inventory_path()).absolute()
    if not inventory.parent.is_dir():
        raise SimError(f"cannot write the inventory {inventory}: no directory {inventory.parent}")
    preflight(need_debootstrap=not rootfs.is_built(rootfs.rootfs_path()))
    cfg = SimConfig(
        home=str(sim_home.absolute()),
        bridge=bridge,
        subnet=subnet,
        nodes=node_names(count),
        inventory=str(inventory),
        control_plane=control_plane,
        data_plane=data_plane if control_plane else "kwok",
    )
    network.check_free(cfg)
    if control_plane:
        cfg.helm_repo_url = _chart_source(charts_dir)
        cfg.charts_dir = str(charts_dir.absolute()) if charts_dir else ""
        binaries.check_can_provide(_components() + _node_components(cfg), bin_dir)

    with locked(sim_home):
        cfg.rootfs = str(rootfs.ensure_rootfs(echo))
        if control_plane:
            cfg.programs = {
                name: str(path)
                for name, path in binaries.provide(_components(), bin_dir, echo).items()
            }
            cfg.node_programs = {
                name: str(path)
                for name, path in binaries.provide(_node_components(cfg), None, echo).items()
            }
        started = time.monotonic()
        # From here on `down` knows what to remove, even if the rest fails.
        cfg.save()
        guide.ensure_keypair(cfg.ssh_key, "cilium-lab-sim")
        if control_plane:
            controlplane.write_sim_pki(cfg)
        network.bridge_up(cfg)
        _registry(cfg, echo)
        raise_inotify_limits(echo)
        what = " with the control plane on " + cfg.api_node if control_plane else ""
        echo(f"booting {count} nodes{what} on {cfg.bridge} ({cfg.subnet}) in {cfg.home}")
        for name in cfg.nodes:
            start_node(cfg, name)
        guide.write_known_hosts(cfg)
        wait_ready(cfg, cfg.nodes, timeout, echo)
        if control_plane:
            _cluster_up(cfg, echo)
        write_inventory(cfg, inventory)
    echo(f"the sim is up ({time.monotonic() - started:.0f}s); inventory: {inventory}")
    if control_plane:
        echo(f"kubeconfig: {cfg.kubeconfig}; chart repository: {cfg.helm_repo_url}")
    return cfg


def _cluster_up(cfg: SimConfig, echo) -> None:
    """The guide's cluster on the booted nodes, the chart repository, the workstation's routes."""
    cluster = _client(cfg)
    echo(f"waiting for the API server at {cfg.api_server}")
    workloads.wait_api(cluster, API_TIMEOUT, echo)
    workloads.register_nodes(cluster, _node_specs(cfg))
    workloads.create_workloads(cluster, _workload_images(cfg))
    real = cfg.data_plane == "real"
    workloads.wait_workloads(
        cluster,
        len(cfg.nodes),
        REAL_WORKLOADS_TIMEOUT if real else API_TIMEOUT,
        echo,
        played=not real,
    )
    _chart_server(cfg)
    cfg.routes = network.add_pod_routes(cfg, echo)
    cfg.save()
    if cfg.routes:
        echo(
            f"routed {len(cfg.routes)} pod CIDRs via their nodes on this machine, as the guide's host does"
        )


def _workload_images(cfg: SimConfig) -> dict[str, str] | None:
    """The guide's workloads' images in the sim's registry (the kwok lab runs none)."""
    if cfg.data_plane != "real":
        return None
    return {name: images.image_ref(cfg, name) for name in ("coredns", "agnhost")}


def _chart_server(cfg: SimConfig) -> None:
    if not cfg.charts_dir or charts.running(cfg.chart_server_pid):
        return
    cfg.chart_server_pid, cfg.helm_repo_url = charts.serve(
        Path(cfg.charts_dir), str(cfg.bridge_address), cfg.path / "charts.log"
    )
    cfg.save()


def _up_again(
    cfg: SimConfig, count, bridge, subnet, control_plane: bool, timeout: float, echo
) -> SimConfig:
    preflight()
    if count is not None and count != len(cfg.nodes):
        raise SimError(
            f"the sim is up with {len(cfg.nodes)} nodes, not {count}; run: cilium-lab sim down"
        )
    for option, wanted, actual in (("bridge", bridge, cfg.bridge), ("subnet", subnet, cfg.subnet)):
        if wanted is not None and wanted != actual:
            raise SimError(
                f"the sim is up with {option} {actual}, not {wanted}; run: cilium-lab sim down"
            )
    if control_plane != cfg.control_plane:
        have = "a control plane" if cfg.control_plane else "no control plane"
        raise SimError(f"the sim is up with {have}; run: cilium-lab sim down first")
    with locked(cfg.path):
        stopped = [name for name in cfg.nodes if nspawn_pid(cfg, name) is None]
        if not stopped:
            echo(f"the sim is already up: {len(cfg.nodes)} nodes on {cfg.bridge} ({cfg.subnet})")
        else:
            echo(f"the sim is up; starting stopped nodes: {', '.join(stopped)}")
            _boot(cfg, stopped, timeout, echo)
        if cfg.control_plane:
            _chart_server(cfg)
        write_inventory(cfg, Path(cfg.inventory))
    return cfg


def down(echo=click.echo) -> bool:
    """Remove every trace of the sim: containers, mounts, veths, namespaces, bridge, routes,
    chart server, node state, certificates."""
    check_platform()
    sim_home = home()
    cfg = SimConfig.load(sim_home)
    if cfg is None:
        echo(f"the sim is not up (no state in {sim_home}); nothing to do")
        return False
    preflight()
    with locked(sim_home):
        charts.stop(cfg.chart_server_pid)
        images.stop(cfg.registry_pid)
        network.remove_pod_routes(cfg, cfg.routes)
        running = [name for name in cfg.nodes if nspawn_pid(cfg, name) is not None]
        if running:
            echo(f"stopping {len(running)} nodes")
        stop_nodes(cfg, cfg.nodes)
        network.bridge_down(cfg)
        leftovers = [n for n in cfg.nodes if mounted(cfg.node_dir(n) / "merged")]
        if leftovers:
            raise SimError(f"could not unmount {', '.join(leftovers)}; retry: cilium-lab sim down")
        shutil.rmtree(cfg.path / "nodes", ignore_errors=True)
        shutil.rmtree(cfg.path / "registry", ignore_errors=True)
        shutil.rmtree(cfg.pki_dir, ignore_errors=True)
        cfg.kubeconfig.unlink(missing_ok=True)
        inventory = Path(cfg.inventory) if cfg.inventory else None
        if inventory and inventory.exists() and _written_by_sim(inventory, cfg):
            inventory.unlink()
        cfg.known_hosts.unlink(missing_ok=True)
        cfg.state_file.unlink()
    echo("the sim is down")
    return True


def _written_by_sim(inventory: Path, cfg: SimConfig) -> bool:
    return f"home: {cfg.home}" in inventory.read_text()


def _boot(cfg: SimConfig, names: list[str], timeout: float, echo) -> None:
    """Start stopped nodes of a sim that is up, and wait until they answer SSH."""
    network.bridge_up(cfg)
    _registry(cfg, echo)
    raise_inotify_limits(echo)
    for name in names:
        start_node(cfg, name)
    wait_ready(cfg, names, timeout, echo)


def _known_nodes(cfg: SimConfig, names: list[str]) -> None:
    for name in names:
        cfg.index(name)


def start(names: list[str], timeout: float = 180, echo=click.echo) -> None:
    cfg = load()
    preflight()
    _known_nodes(cfg, names)
    with locked(cfg.path):
        _boot(cfg, names, timeout, echo)
        if cfg.control_plane:
            cluster = _client(cfg)
            workloads.wait_api(cluster, API_TIMEOUT, echo)
            _wait_node_state(
                cfg, cluster, [n for n in names if n != cfg.api_node] or names, True, echo
            )


def stop(names: list[str], echo=click.echo) -> None:
    cfg = load()
    preflight()
    _known_nodes(cfg, names)
    with locked(cfg.path):
        stop_nodes(cfg, names)
        if cfg.control_plane and cfg.api_node not in names:
            # What a kubelet that went away leaves: the node controller marks its Node NotReady.
            _wait_node_state(cfg, _client(cfg), names, False, echo)
    echo(
        f"stopped {', '.join(names)} (their changes are kept; cilium-lab sim start brings them back)"
    )


def _wait_node_state(
    cfg: SimConfig, cluster: kube.Cluster, names: list[str], ready: bool, echo
) -> None:
    word = "Ready" if ready else "NotReady"

    def check():
        try:
            nodes = {n.metadata.name: n for n in cluster.call(cluster.core.list_node).items}
        except ClusterError as error:
            raise SimError(str(error)) from None
        pending = [name for name in names if workloads.node_ready(nodes.get(name)) != ready]
        if pending:
            return f"waiting for Node {', '.join(pending)} to be {word} (the node controller's grace period)"
        return None

    workloads.poll(
        check, NODE_STATE_TIMEOUT, echo, lambda why: f"after {NODE_STATE_TIMEOUT:.0f}s still {why}"
    )
    echo(f"  Node {', '.join(names)} {word}")


def status(cfg: SimConfig) -> list[dict]:
    def one(name: str) -> dict:
        running = nspawn_pid(cfg, name) is not None
        info = {
            "name": name,
            "address": str(cfg.address(name)),
            "running": running,
            "system": "-",
            "ssh": "-",
        }
        if running:
            info["system"] = booted(cfg, name)
            info["ssh"] = ssh_login(cfg, name) or "ok"
        return info

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(one, cfg.nodes))


def cluster_status(cfg: SimConfig) -> dict[str, str]:
    """Node name -> Ready / NotReady / missing, as the API server says; {} when it does not answer."""
    try:
        cluster = kube.load(str(cfg.kubeconfig))
        nodes = {n.metadata.name: n for n in cluster.call(cluster.core.list_node).items}
    except ClusterError:
        return {}
    return {
        name: (
            "missing"
            if name not in nodes
            else "Ready"
            if workloads.node_ready(nodes[name])
            else "NotReady"
        )
        for name in cfg.nodes
    }

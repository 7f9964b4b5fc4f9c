"""``cilium-lab sim``: bring the simulated lab up, inspect it, take nodes down, remove it."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from cilium_lab.cluster.connectivity import connectivity_command
from cilium_lab.sim import SimError, images, lab


def one_line_errors(f):
    """SimError (bad input, missing tool, a node that does not boot) is one line and exit 1."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except SimError as e:
            raise click.ClickException(str(e)) from None

    return wrapper


@click.group()
def sim():
    """The simulated lab: the guide's nodes as systemd-nspawn containers on this machine (root, Linux).

    State lives in $CILIUM_LAB_SIM_HOME (default /var/lib/cilium-lab); the shared root filesystem
    in $CILIUM_LAB_SIM_CACHE (default /var/cache/cilium-lab).
    """


@sim.command()
@click.option(
    "--nodes",
    "count",
    type=click.IntRange(1, 250),
    default=None,
    help="Number of nodes (default 6: control0-2, worker0-2; more are worker3, ...).",
)
@click.option(
    "--bridge", default=None, help="Bridge name (default cilab0, or $CILIUM_LAB_SIM_BRIDGE)."
)
@click.option(
    "--subnet", default=None, help="Node subnet (default 10.251.0.0/24, or $CILIUM_LAB_SIM_SUBNET)."
)
@click.option(
    "--inventory",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the pyinfra inventory (default inventories/sim.py).",
)
@click.option(
    "--timeout",
    type=float,
    default=180,
    show_default=True,
    help="Seconds to wait for the nodes to boot.",
)
@click.option(
    "--charts",
    "charts_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="A helm repository's directory (with index.yaml) to serve on the bridge, e.g. ../shared/charts "
    "(default: the official repository the group data names).",
)
@click.option(
    "--bin-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Release binaries to use instead of building them: etcd, kube-apiserver, "
    "kube-controller-manager, kube-scheduler, kwok.",
)
@click.option(
    "--no-control-plane",
    is_flag=True,
    help="Only the nodes: no API server, no kwok, no local group.",
)
@click.option(
    "--data-plane",
    type=click.Choice(["real", "kwok"]),
    default="real",
    show_default=True,
    help="real: real kubelets, containerd and kube-proxy on every node, the pods run, and the "
    "migration gets Cilium's real agents (builds them the first time). kwok: kwok plays the "
    "kubelets and no container runs (the fast lab of the tests and the benchmark).",
)
@one_line_errors
def up(
    count, bridge, subnet, inventory, timeout, charts_dir, bin_dir, no_control_plane, data_plane
):
    """Boot the nodes and the control plane (building what is missing the first time) and write the inventory."""
    lab.up(
        count=count,
        bridge=bridge,
        subnet=subnet,
        inventory=inventory,
        timeout=timeout,
        control_plane=not no_control_plane,
        charts_dir=charts_dir,
        bin_dir=bin_dir,
        data_plane=data_plane,
    )


@sim.command()
@one_line_errors
def down():
    """Stop every node and remove the sim: containers, mounts, network, node state, inventory."""
    lab.down()


@sim.command()
@one_line_errors
def status():
    """Show each node: running or stopped, address, boot state, SSH login."""
    cfg = lab.load()
    rows = lab.status(cfg)
    click.echo(f"sim in {cfg.home}: bridge {cfg.bridge} ({cfg.subnet}), inventory {cfg.inventory}")
    nodes = lab.cluster_status(cfg) if cfg.control_plane else {}
    if cfg.control_plane:
        answer = "answers" if nodes else "does not answer"
        click.echo(
            f"API server {cfg.api_server} {answer}; kubeconfig {cfg.kubeconfig}; charts {cfg.helm_repo_url}"
        )
    click.echo(f"{'NODE':<10} {'STATE':<8} {'ADDRESS':<15} {'SYSTEMD':<10} {'NODE OBJECT':<12} SSH")
    for row in rows:
        state = "running" if row["running"] else "stopped"
        node = nodes.get(row["name"], "-")
        click.echo(
            f"{row['name']:<10} {state:<8} {row['address']:<15} {row['system']:<10} {node:<12} {row['ssh']}"
        )
    if not all(row["running"] and row["ssh"] == "ok" for row in rows) or (
        cfg.control_plane and not nodes
    ):
        raise SystemExit(1)


@sim.command()
@click.argument("names", nargs=-1, required=True)
@click.option(
    "--timeout",
    type=float,
    default=180,
    show_default=True,
    help="Seconds to wait for the nodes to boot.",
)
@one_line_errors
def start(names, timeout):
    """Start stopped nodes again, with the changes they had."""
    lab.start(list(names), timeout=timeout)


@sim.command()
@click.argument("names", nargs=-1, required=True)
@one_line_errors
def stop(names):
    """Power nodes off, keeping their changes (to test a deploy with a node down)."""
    lab.stop(list(names))


def _with_control_plane():
    """The running sim's configuration, or one line when it has no control plane."""
    cfg = lab.load()
    if not cfg.control_plane:
        raise SimError("this sim has no control plane (it was brought up with --no-control-plane)")
    return cfg


@sim.command()
@one_line_errors
def kubeconfig():
    """Print the path of the workstation's kubeconfig for the sim's API server."""
    cfg = _with_control_plane()
    click.echo(str(cfg.kubeconfig))


@sim.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@one_line_errors
def connectivity(args):
    """Run `cilium-lab connectivity` on the sim: its kubeconfig, its registry's test image, and
    the NodePorts probed over its bridge only; other options (-o json, --keep, ...) pass through."""
    cfg = _with_control_plane()
    if cfg.data_plane != "real":
        raise SimError(
            "the kwok lab runs no container, so nothing can be checked; bring the sim up with "
            "--data-plane real (the default)"
        )
    given = [
        "--kubeconfig",
        str(cfg.kubeconfig),
        "--image",
        images.image_ref(cfg, "agnhost"),
        "--route-dev",
        cfg.bridge,
    ]
    connectivity_command.main(
        args=[*given, *args], prog_name="cilium-lab sim connectivity", standalone_mode=True
    )

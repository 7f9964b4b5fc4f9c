"""``cilium-lab sim``: bring the simulated lab up, inspect it, take nodes down, remove it."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from cilium_lab.sim import SimError, nodes


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
@click.option("--nodes", "count", type=click.IntRange(1, 250), default=None, help="Number of nodes (default 6: control0-2, worker0-2; more are worker3, ...).")
@click.option("--bridge", default=None, help="Bridge name (default cilab0, or $CILIUM_LAB_SIM_BRIDGE).")
@click.option("--subnet", default=None, help="Node subnet (default 10.251.0.0/24, or $CILIUM_LAB_SIM_SUBNET).")
@click.option("--inventory", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Where to write the pyinfra inventory (default inventories/sim.py).")
@click.option("--timeout", type=float, default=180, show_default=True, help="Seconds to wait for the nodes to boot.")
@one_line_errors
def up(count, bridge, subnet, inventory, timeout):
    """Boot the nodes (building the root filesystem the first time) and write the inventory."""
    nodes.up(count=count, bridge=bridge, subnet=subnet, inventory=inventory, timeout=timeout)


@sim.command()
@one_line_errors
def down():
    """Stop every node and remove the sim: containers, mounts, network, node state, inventory."""
    nodes.down()


@sim.command()
@one_line_errors
def status():
    """Show each node: running or stopped, address, boot state, SSH login."""
    cfg = nodes.load()
    rows = nodes.status(cfg)
    click.echo(f"sim in {cfg.home}: bridge {cfg.bridge} ({cfg.subnet}), inventory {cfg.inventory}")
    click.echo(f"{'NODE':<10} {'STATE':<8} {'ADDRESS':<15} {'SYSTEMD':<10} SSH")
    for row in rows:
        state = "running" if row["running"] else "stopped"
        click.echo(f"{row['name']:<10} {state:<8} {row['address']:<15} {row['system']:<10} {row['ssh']}")
    if not all(row["running"] and row["ssh"] == "ok" for row in rows):
        raise SystemExit(1)


@sim.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--timeout", type=float, default=180, show_default=True, help="Seconds to wait for the nodes to boot.")
@one_line_errors
def start(names, timeout):
    """Start stopped nodes again, with the changes they had."""
    nodes.start(list(names), timeout=timeout)


@sim.command()
@click.argument("names", nargs=-1, required=True)
@one_line_errors
def stop(names):
    """Power nodes off, keeping their changes (to test a deploy with a node down)."""
    nodes.stop(list(names))

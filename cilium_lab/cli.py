"""The ``cilium-lab`` command: cluster commands and the simulated lab."""

import click

from cilium_lab.cluster.commands import restart_pods_command, status_command, verify_command
from cilium_lab.cluster.connectivity import connectivity_command
from cilium_lab.sim.cli import sim


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Move a hand-built Kubernetes cluster to Cilium, and try it on a simulated lab."""


cli.add_command(sim)
cli.add_command(verify_command)
cli.add_command(restart_pods_command)
cli.add_command(status_command)
cli.add_command(connectivity_command)


def main():
    cli()

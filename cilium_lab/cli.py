"""The ``cilium-lab`` command: cluster commands and the simulated lab.

Each subcommand's module is imported when that subcommand runs (or when help lists them):
the deploy's cluster read runs ``python -m cilium_lab status`` once per run, before any node
changes, and that must not pay for the simulated lab's and the connectivity check's imports.
"""

import importlib

import click

# name -> (module, attribute), in the order help lists them.
COMMANDS = {
    "sim": ("cilium_lab.sim.cli", "sim"),
    "verify": ("cilium_lab.cluster.commands", "verify_command"),
    "restart-pods": ("cilium_lab.cluster.commands", "restart_pods_command"),
    "status": ("cilium_lab.cluster.commands", "status_command"),
    "connectivity": ("cilium_lab.cluster.connectivity", "connectivity_command"),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use (click's documented pattern)."""

    def list_commands(self, ctx):
        return [*COMMANDS, *(name for name in super().list_commands(ctx) if name not in COMMANDS)]

    def get_command(self, ctx, cmd_name):
        if cmd_name in COMMANDS and cmd_name not in self.commands:
            module, attribute = COMMANDS[cmd_name]
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Move a hand-built Kubernetes cluster to Cilium, and try it on a simulated lab."""


def main():
    cli()

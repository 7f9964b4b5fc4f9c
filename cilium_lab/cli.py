"""The ``cilium-lab`` command: cluster commands and the simulated lab."""

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Move a hand-built Kubernetes cluster to Cilium, and try it on a simulated lab."""


def main():
    cli()

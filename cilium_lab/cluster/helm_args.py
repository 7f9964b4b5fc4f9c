"""
What helm is told, spelled once for both sides of the process boundary: the deploy's operations
build the changing helm commands with it, in pyinfra's process, and ``cilium-lab status`` (the
cluster facts' subprocess) its reading ones.

Light on purpose, the standard library only: the facts and operations import it while pyinfra
loads the deploy file, where the ``kubernetes`` client's imports would cost most of a second.
It lives in ``cilium_lab/cluster/`` because the deploy side already depends on this package (it
runs it), while ``cilium_lab`` never imports ``facts``, ``operations`` or ``deploys``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cilium_lab.cluster import ClusterError


def values_document(values) -> str:
    """The chart's values as one JSON document, sorted: the same values give the same text, so
    the same command (pyinfra keys its fact cache by it) and a plain comparison with helm's."""
    return json.dumps(values or {}, sort_keys=True, separators=(",", ":"))


def helm_cluster_flags(kubeconfig: str | None, context: str | None) -> list[str]:
    """The flags that point helm at the cluster; none for helm's own defaults."""
    return [
        *(["--kubeconfig", os.path.expanduser(kubeconfig)] if kubeconfig else []),
        *(["--kube-context", context] if context else []),
    ]


def local_chart(chart: str) -> bool:
    """Whether ``chart`` is a chart directory or a .tgz: it carries its own version, so helm is
    given no ``--version`` for it."""
    if chart.startswith("oci://"):
        return False
    return chart.startswith((".", "/", "~")) or chart.endswith(".tgz") or Path(chart).exists()


def chart_kind(chart: str) -> str:
    """``oci``, ``path`` (a chart directory or .tgz) or ``repo`` (``repo/chart``)."""
    if chart.startswith("oci://"):
        return "oci"
    if local_chart(chart):
        return "path"
    if chart.count("/") == 1:
        return "repo"
    raise ClusterError(
        f"chart {chart!r} is neither repo/chart, a chart directory, a .tgz nor an oci:// reference"
    )


# Each revision this project makes carries it as its helm description (``helm history`` shows
# it): a revision that does not was made by hand, and the values only it set are the user's.
DESCRIPTION_PREFIX = "cilium-lab"
DESCRIPTION = f"{DESCRIPTION_PREFIX}: the release as the group data declares it"


def creates_namespace(extra_args) -> bool:
    """Whether ``helm upgrade --install`` with these extra flags creates a missing namespace."""
    found = False
    for arg in extra_args or ():
        if arg == "--create-namespace":
            found = True
        elif str(arg).startswith("--create-namespace="):
            found = str(arg).partition("=")[2].lower() in ("true", "1", "t")
    return found


class HiddenValues(dict):
    """``cilium_values`` as a fact's argument: pyinfra prints a failed fact's arguments, and the
    values may hold secrets, so this says how many keys there are and never what they hold."""

    def __repr__(self) -> str:
        return f"<cilium_values: {len(self)} keys>"

    __str__ = __repr__


def hidden(values):
    """``values`` wrapped so that printing it shows no value; anything but a mapping as it is."""
    return HiddenValues(values) if isinstance(values, dict) else values

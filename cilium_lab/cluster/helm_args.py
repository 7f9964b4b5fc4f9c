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

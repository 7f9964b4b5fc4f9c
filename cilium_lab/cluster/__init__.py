"""
The cluster phase: install Cilium with helm, verify it through the Kubernetes API, and recreate
the pods that were started under the old CNI.

One job per module: ``kube`` (client loading, API errors), ``verify`` (health and waiting),
``pods`` (pods from the old CNI), ``helm`` (the helm binary), ``status`` (JSON for the facts),
``commands`` (the click commands). The deploy's facts and operations and the CLI share them.
"""


class ClusterError(Exception):
    """A problem the user must fix, said in one or two lines (no traceback)."""

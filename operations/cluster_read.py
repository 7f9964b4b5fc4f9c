"""
What one run knows of the cluster: the preflight's one read, kept for the cluster operations
until one of them changes the cluster.

The preflight reads the whole cluster in one command (the ClusterState fact: the repository, the
release, Cilium's health and the old CNI's pods; one Python started for a no-change re-run). Each
cluster operation given the run's :class:`ClusterRead` takes its section from that answer while
it holds, and says so when it changes the cluster: from then on every operation reads its own
fact afresh. The node phase does not make the answer stale: restarting kubelet or removing
kube-proxy changes nothing helm or these checks read.

The deploy gets one per ``local`` host from its run (``deploys/support/run.py``), and passes it
to the preflight and to each cluster operation as ``cluster_read=``.
"""

from __future__ import annotations

from facts.cluster_phase import ClusterState


class ClusterRead:
    """The run's knowledge of the cluster, for one host of ``local``.

    + args: what ClusterState reads (release, namespace, chart, version, values, repo_name,
      repo_url, kubeconfig, context, extra_args, takeover); an operation called with other
      arguments than these reads its own fact
    """

    def __init__(self, **args):
        self.args = args
        self._answer: dict = {}
        # Set once an operation installs or upgrades the release in this run: the wait for
        # Cilium then always runs, whatever was read before.
        self.release_changes = False
        # Set once an operation changes the cluster in this run (the nodes' reads go stale).
        self.cluster_changes = False

    def read(self, host) -> dict:
        """Read the cluster on ``host`` (one command), and keep the answer for the operations."""
        self._answer = host.get_fact(ClusterState, **self.args) or {}
        return self._answer

    def known(self, section: str, **args) -> dict | None:
        """The kept answer's ``section`` (repo, release, health, pods), while nothing changed the
        cluster, if it was read for these same arguments; else None."""
        if any(self.args.get(key) != value for key, value in args.items()):
            return None
        return self._answer.get(section)

    def changed(self, release: bool = False) -> None:
        """An operation changes the cluster (``release``: installs or upgrades the release): the
        kept answer is stale from here on."""
        self._answer = {}
        self.cluster_changes = True
        if release:
            self.release_changes = True

"""
One pyinfra run's own state, beside pyinfra's: the preflight's verdict, the node locks the run
holds, and what it knows of the cluster and of each node.

pyinfra executes the deploy file once per host, each time afresh, in one process with one
State. What must outlast one host's pass lives in this object: the verdict the first pass
computes for every host, the SSH channels that hold the node locks until the run ends, the
preflight's read of the cluster that the cluster operations use, and the preflight's read of
each node that its operations use. The deploy file gets it with
``Run.of(state)``, which keeps it as one attribute of that State, so it ends with the run; the
deploy passes it to the preflight, its cluster read to the cluster operations and its node
reads to the node operations.
"""

from __future__ import annotations

from gevent.lock import Semaphore

from deploys.support import data
from deploys.support.lock import NodeLocks
from operations.cluster_read import ClusterRead
from operations.node_read import NodeRead

# The State's attribute that holds its run.
_ATTRIBUTE = "cilium_lab_run"


class Run:
    """What one run knows beyond pyinfra's State."""

    def __init__(self, state):
        self.state = state
        # {host name: [problems]}, computed once, by the first host's pass, for every host.
        self.verdict: dict[str, list[str]] | None = None
        # Held while the verdict is computed: the other hosts' passes wait for it.
        self.checking = Semaphore()
        self.locks = NodeLocks()
        self._cluster_reads: dict[str, ClusterRead] = {}
        self._node_reads: dict[str, NodeRead] = {}

    @classmethod
    def of(cls, state) -> Run:
        """The run of this State, made on the first call."""
        run = getattr(state, _ATTRIBUTE, None)
        if run is None:
            run = cls(state)
            setattr(state, _ATTRIBUTE, run)
        return run

    def cluster_read(self, host) -> ClusterRead:
        """This run's read of the cluster for ``host`` (of ``local``): of the release, chart and
        values its data declares, and the pods from the old CNI."""
        if host.name not in self._cluster_reads:
            self._cluster_reads[host.name] = ClusterRead(**data.release(host))
        return self._cluster_reads[host.name]

    def node_read(self, host, facts: list[tuple[type, dict]]) -> NodeRead:
        """This run's read of the node ``host``: ``facts`` read in one command, the first time
        it is asked for (by the preflight, once the node's lock is held). Only while this run
        holds the node's lock: a read before it could see another run's changes half-made."""
        if host.name not in self.locks.held:
            raise RuntimeError(f"{host.name} is read only while this run holds its lock")
        if host.name not in self._node_reads:
            read = NodeRead(facts, stale=self.cluster_changed)
            read.read(host)
            self._node_reads[host.name] = read
        return self._node_reads[host.name]

    def cluster_changed(self) -> bool:
        """Whether a cluster operation changed the cluster in this run: Cilium's agents then
        write to the nodes (their CNI configuration, their state), and what was read there
        before is stale."""
        return any(read.cluster_changes for read in self._cluster_reads.values())

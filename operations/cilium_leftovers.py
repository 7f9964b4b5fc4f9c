"""
Cilium's leftovers on a node once its agents are uninstalled: its devices, its pinned eBPF
state, its CILIUM_* iptables chains and its state directory go, as
``cilium-dbg post-uninstall-cleanup`` removes them; everything else stays.
"""

from __future__ import annotations

import posixpath
import shlex

from pyinfra import host
from pyinfra.api import StringCommand, operation
from pyinfra.api.exceptions import OperationValueError

from facts.cilium_leftovers import CHAIN_PATTERN, CiliumLeftovers

# Said, and the run stops before its first change, when an agent still runs: it would write
# back what goes (and the old CNI configurations would be renamed again).
AGENT_RUNS = (
    "cilium-lab: cilium-agent still runs on this node: uninstall Cilium first (helm uninstall "
    "--wait), then run deploys/rollback.py again"
)


@operation()
def cilium_leftovers_absent(bpffs_root: str = "/sys/fs/bpf", state_dirs=("/var/run/cilium",)):
    """
    Remove what Cilium's agent leaves on a node once it is uninstalled:

    - every iptables and ip6tables line naming its ``CILIUM_*`` chains (the chains, the rules in
      them and the jumps to them from the built-in chains), a table at a time in one
      ``iptables-restore``, so that every other rule stays as it was (kube-proxy's, the
      kubelet's);
    - its pinned eBPF objects: ``BPFFS/cilium`` holds the links through which its programs are
      attached (TCX on its devices and the node's own, socket LB on the root cgroup), so removing
      the pins detaches them; its maps in ``BPFFS/tc/globals`` (the directory stays: iproute2's);
    - its devices (``cilium_host`` with its peer ``cilium_net``, ``cilium_vxlan``, the endpoints'
      ``lxc…``), and the routes through them with them;
    - its state directories (``/var/run/cilium``).

    + bpffs_root: where the bpffs is mounted (the chart's ``bpf.root``)
    + state_dirs: the agent's state directories

    Nothing is recorded first: none of it is restored (the migration's records of what it
    changed, in ``/var/backups/cilium-lab``, are the rollback's, and none of this is in them);
    the next migration's agents make it all anew. Cilium's CNI configuration is not here:
    ``cni_configs_restored`` moves it out of kubelet's way with the others. When an agent still
    runs the first command stops the run, before any change. Nothing left: no change.

    **Example:**

    .. code:: python

        cilium_leftovers_absent(
            name="Remove what Cilium's agent left on the node",
            bpffs_root="/sys/fs/bpf",
            state_dirs=["/var/run/cilium"],
        )
    """

    problem = _problem(bpffs_root, state_dirs)
    if problem:
        raise OperationValueError(problem)

    found = host.get_fact(CiliumLeftovers, bpffs_root=bpffs_root, state_dirs=tuple(state_dirs))
    tables = [
        (family, table) for family in ("iptables", "ip6tables") for table in sorted(found[family])
    ]

    if not (tables or found["pins"] or found["links"] or found["dirs"]):
        host.noop("nothing of Cilium's agent left on the node")
        return

    # Checked again when the run gets here: the uninstall before it waits for the agents to go.
    yield f"! grep -qsx cilium-agent /proc/[0-9]*/comm || {{ echo {shlex.quote(AGENT_RUNS)} >&2; exit 1; }}"

    for family, table in tables:
        # One table at a time, so that a table without Cilium's lines is never rewritten.
        yield StringCommand(
            f'rules="$({family}-save -t {table})" &&',
            f"printf '%s\\n' \"$rules\" | grep -v -- {CHAIN_PATTERN} | {family}-restore",
        )

    if found["pins"]:
        yield f"rm -rf -- {shlex.join(found['pins'])}"

    for link in found["links"]:
        # cilium_net goes with cilium_host (a veth pair), an lxc device with its pod's end.
        yield f"! ip link show {shlex.quote(link)} >/dev/null 2>&1 || ip link delete {shlex.quote(link)}"

    if found["dirs"]:
        yield f"rm -rf -- {shlex.join(found['dirs'])}"


def _problem(bpffs_root, state_dirs) -> str | None:
    """What is wrong with the paths, in one line: everything under them is removed."""
    if not isinstance(bpffs_root, str) or not posixpath.isabs(bpffs_root):
        return f"cilium_bpffs_root {bpffs_root!r} is not an absolute path: give the bpffs mount"
    if isinstance(state_dirs, str) or not isinstance(state_dirs, list | tuple):
        return f"cilium_state_dirs {state_dirs!r} is not a list of directories"
    for path in state_dirs:
        if not isinstance(path, str) or not posixpath.isabs(path):
            return f"cilium_state_dirs: {path!r} is not an absolute path"
        if len(posixpath.normpath(path).strip("/").split("/")) < 2:
            # "/", "/var": removed as a whole, everything in them would go.
            return f"cilium_state_dirs: {path!r} is not a directory of Cilium's own"
    return None

"""
The way back from deploys/cilium.py: the cluster's network as the guide built it, before Cilium.

    pyinfra inventories/lab.py deploys/rollback.py          # roll back
    pyinfra inventories/lab.py deploys/rollback.py --dry    # show what would change

It undoes the migration in reverse: Cilium's release goes first (a running agent would rename
the old CNI configurations again), then what its agents left in each node's kernel (devices,
pinned eBPF programs, CILIUM_* chains, state), then each node gets kube-proxy, its CNI
configurations and its br_netfilter persistence back from the backups the migration kept, and
the workstation its routes to the pod CIDRs. Last, the pods Cilium addressed are recreated on
the old network. Migrate then roll back, and every node is as it was, file for file.
"""

from pyinfra import host, state

from deploys.support import data, interrupt, preflight, ssh
from deploys.support.run import Run
from operations.br_netfilter import br_netfilter_persisted
from operations.cilium_leftovers import cilium_leftovers_absent
from operations.cluster_phase import cilium_pods_restarted, cilium_release_absent
from operations.cni import cni_configs_restored
from operations.phase import phase_reached, workstation_ok
from operations.routes import pod_cidr_routes_present
from operations.systemd_unit import unit_restored

is_node = "local" not in host.groups

# Ctrl-C ends the run at once, non-zero, saying what it may have left (see deploys/cilium.py).
interrupt.exit_non_zero_on_interrupt(
    state, "hosts may be half rolled back; run deploys/rollback.py again"
)

# Every host is connected by now: each small remote command answers without a delayed ACK.
ssh.no_delay(state)

# Before anything: every host can be rolled back, or no host is touched.
preflight.require(Run.of(state), rollback=True)

# Removing Cilium

if "local" in host.groups:
    cilium_release_absent(
        name="Uninstall Cilium",
        release=data.value(host, "cilium_release"),
        **data.cluster(host),
        extra_args=data.value(host, "helm_uninstall_args"),
    )

# Bringing back what Cilium replaced, once its agents are gone (a failed uninstall leaves the
# nodes as they are: a running agent would rename the restored configurations)

phase_reached(
    name="Cilium is gone from the cluster", phase="the nodes can have their old network back"
)

if is_node:
    # Once uninstalled, the agent's eBPF programs stay attached and go on steering traffic over
    # maps nothing updates; they go first, before the old network comes back beside them.
    cilium_leftovers_absent(
        name="Remove what Cilium's agent left on the node",
        bpffs_root=data.value(host, "cilium_bpffs_root"),
        state_dirs=data.value(host, "cilium_state_dirs"),
        _if=workstation_ok,
    )

    br_netfilter_persisted(
        name="Load br_netfilter at boot again",
        backup_dir=data.value(host, "modules_backup_dir"),
        persist_file=data.value(host, "modules_persist_file"),
        _if=workstation_ok,
    )

    cni_configs_restored(
        name="Restore the old CNI configurations and restart kubelet",
        conf_dir=data.value(host, "cni_conf_dir"),
        backup_dir=data.value(host, "cni_backup_dir"),
        restart_unit=data.value(host, "kubelet_unit"),
        _if=workstation_ok,
    )

    # kube-proxy writes its KUBE-* rules back when it starts.
    unit_restored(
        name="Give kube-proxy back its state from before the migration",
        unit=data.value(host, "kube_proxy_unit"),
        record_dir=data.value(host, "units_record_dir"),
        _if=workstation_ok,
    )

if "local" in host.groups and (routes := data.pod_routes(state.inventory)):
    pod_cidr_routes_present(
        name="Route the pod CIDRs via the nodes again",
        routes=routes,
        _sudo=data.value(host, "host_routes_sudo"),
    )

# Recreating the pods Cilium addressed, once every node has its old network back

phase_reached(name="Every node runs its old network again", phase="the pods can follow")

if "local" in host.groups:
    # The migration's pod restart in reverse: a pod keeps Cilium's address, on a device nothing
    # serves any more, until it is recreated.
    cilium_pods_restarted(
        name="Recreate the pods Cilium addressed",
        **data.cluster(host),
        timeout=data.seconds(host, "pod_restart_timeout"),
        pod_cidrs=data.pod_cidrs(state.inventory),
    )

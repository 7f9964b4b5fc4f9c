"""
The guide's chapter "Simplifying Network Setup with Cilium", as declared state.

    pyinfra inventories/lab.py deploys/cilium.py          # migrate
    pyinfra inventories/lab.py deploys/cilium.py --dry    # show what would change
    pyinfra inventories/lab.py deploys/rollback.py        # the way back (see there)

Every value comes from the inventory and its group data. Hosts in the ``local`` group (the
machine running pyinfra) do the workstation's part; all other hosts are Kubernetes nodes.
"""

from pyinfra import host, state

from deploys.support import data, interrupt, node_facts, preflight, ssh
from deploys.support.run import Run
from operations.br_netfilter import br_netfilter_absent
from operations.cluster_phase import (
    cilium_healthy,
    cilium_release,
    helm_repository,
    old_cni_pods_restarted,
)
from operations.cni import cni_configs_absent
from operations.kube_proxy_rules import kube_proxy_rules_absent
from operations.phase import phase_reached, workstation_ok
from operations.routes import pod_cidr_routes_absent
from operations.systemd_unit import unit_stopped_and_disabled

is_node = "local" not in host.groups

# Ctrl-C ends the run at once, non-zero, saying what it may have left (pyinfra's own handler
# exits 0 and can hang: tests/upstream/test_pyinfra_sigint.py).
interrupt.exit_non_zero_on_interrupt(state)

# Every host is connected by now: each small remote command answers without a delayed ACK.
ssh.no_delay(state)

# What this run knows beyond pyinfra's State: the preflight's verdict, the node locks it holds,
# its one read of the cluster and of each node, which the operations use until one changes it.
run = Run.of(state)

# Before anything: every host can take the migration, or no host is touched. Each node's state
# is read in one command meanwhile, its lock held; its operations use it until one changes it.
preflight.require(run, node_facts=node_facts.migration)
node_read = run.node_read(host, node_facts.migration(host)) if is_node else None

# Removing stuff to be replaced with Cilium

if is_node:
    unit_stopped_and_disabled(
        name="Stop and disable kube-proxy", **data.kube_proxy_unit(host), node_read=node_read
    )

    # Cilium's kube-proxy replacement guide: what kube-proxy leaves in iptables goes too.
    kube_proxy_rules_absent(name="Remove kube-proxy's iptables leftovers", node_read=node_read)

    cni_configs_absent(
        name="Remove the old CNI configurations and restart kubelet",
        **data.cni_dirs(host),
        restart_unit=data.value(host, "kubelet_unit"),
        node_read=node_read,
    )

# Installing Cilium, once no node runs kube-proxy or the old CNI any more

phase_reached(
    name="Every node is off kube-proxy and the old CNI", phase="the nodes are ready for Cilium"
)

if "local" in host.groups:
    cluster_read = run.cluster_read(host)

    helm_repository(
        name="Add Cilium's helm repository", **data.chart(host), cluster_read=cluster_read
    )

    cilium_release(
        name="Install Cilium with helm",
        **data.release(host),
        cluster_read=cluster_read,
    )

    cilium_healthy(
        name="Wait until the cilium and cilium-operator pods are up",
        **data.cluster(host),
        timeout=data.seconds(host, "cilium_wait_timeout"),
        cluster_read=cluster_read,
    )

    # The pods Cilium does not manage yet, evicted as their PodDisruptionBudgets allow.
    old_cni_pods_restarted(
        name="Restart the pods started with the previous CNI",
        release=data.value(host, "cilium_release"),
        **data.cluster(host),
        timeout=data.seconds(host, "pod_restart_timeout"),
        cluster_read=cluster_read,
    )

# Cleaning up: Cilium's overlay carries pod traffic now

phase_reached(name="Cilium runs on every node", phase="the old network's last pieces can go")

if "local" in host.groups and (routes := data.pod_routes(state.inventory)):
    pod_cidr_routes_absent(
        name="Delete the host routes to the pod CIDRs",
        routes=routes,
        _sudo=data.value(host, "host_routes_sudo"),
    )

if is_node:
    br_netfilter_absent(
        name="Unload br_netfilter and stop loading it at boot",
        backup_dir=data.value(host, "modules_backup_dir"),
        node_read=node_read,
        # Not while Cilium is not healthy (the workstation's part failed): kept for a re-run.
        _if=workstation_ok,
    )

"""
The way back from deploys/cilium.py: the cluster's network as the guide built it, before Cilium.

    pyinfra inventories/lab.py deploys/rollback.py          # roll back
    pyinfra inventories/lab.py deploys/rollback.py --dry    # show what would change

It undoes the migration in reverse: Cilium's release goes first (a running agent would rename
the old CNI configurations again), then each node gets kube-proxy, its CNI configurations and
its br_netfilter persistence back from the backups the migration kept, and the workstation its
routes to the pod CIDRs. Migrate then roll back, and every node is as it was, file for file.
"""

from pyinfra import host, state

from cilium_lab import preflight
from cilium_lab.routes import pod_routes

from operations.br_netfilter import br_netfilter_persisted
from operations.cilium_release import cilium_release_absent
from operations.cni import cni_configs_restored
from operations.kube_proxy import kube_proxy_enabled
from operations.phase import phase_reached, workstation_ok
from operations.routes import pod_cidr_routes_present

is_node = "local" not in host.groups

# Before anything: every host can be rolled back, or no host is touched.
preflight.require(state, rollback=True)

# Removing Cilium

if "local" in host.groups:
    cilium_release_absent(
        name="Uninstall Cilium",
        release=host.data.cilium_release,
        namespace=host.data.cilium_namespace,
        kubeconfig=host.data.get("kubeconfig"),
        context=host.data.get("kube_context"),
        extra_args=host.data.get("helm_uninstall_args", []),
    )

# Bringing back what Cilium replaced, once its agents are gone (a failed uninstall leaves the
# nodes as they are: a running agent would rename the restored configurations)

phase_reached(name="Cilium is gone from the cluster", phase="the nodes can have their old network back")

if is_node:
    br_netfilter_persisted(
        name="Load br_netfilter at boot again",
        backup_dir=host.data.modules_backup_dir,
        persist_file=host.data.modules_persist_file,
        _if=workstation_ok,
    )

    cni_configs_restored(
        name="Restore the old CNI configurations and restart kubelet",
        conf_dir=host.data.cni_conf_dir,
        backup_dir=host.data.cni_backup_dir,
        restart_unit=host.data.kubelet_unit,
        _if=workstation_ok,
    )

    # kube-proxy writes its KUBE-* rules back when it starts.
    kube_proxy_enabled(
        name="Enable and start kube-proxy",
        unit=host.data.kube_proxy_unit,
        _if=workstation_ok,
    )

if "local" in host.groups and (routes := pod_routes(state.inventory)):
    pod_cidr_routes_present(
        name="Route the pod CIDRs via the nodes again",
        routes=routes,
        _sudo=host.data.get("host_routes_sudo", True),
    )

"""
The guide's chapter "Simplifying Network Setup with Cilium", as declared state.

    pyinfra inventories/lab.py deploys/cilium.py          # migrate
    pyinfra inventories/lab.py deploys/cilium.py --dry    # show what would change
    pyinfra inventories/lab.py deploys/rollback.py        # the way back (see there)

Every value comes from the inventory and its group data. Hosts in the ``local`` group (the
machine running pyinfra) do the workstation's part; all other hosts are Kubernetes nodes.
"""

from pyinfra import host, state

from cilium_lab import preflight
from cilium_lab.routes import pod_routes

from operations.br_netfilter import br_netfilter_absent
from operations.cilium_release import (
    cilium_healthy,
    cilium_release,
    helm_repository,
    old_cni_pods_restarted,
)
from operations.cni import cni_configs_absent
from operations.kube_proxy import kube_proxy_disabled
from operations.kube_proxy_rules import kube_proxy_rules_absent
from operations.phase import phase_reached, workstation_ok
from operations.routes import pod_cidr_routes_absent

is_node = "local" not in host.groups

# Before anything: every host can take the migration, or no host is touched.
preflight.require(state)

# Removing stuff to be replaced with Cilium

if is_node:
    kube_proxy_disabled(
        name="Stop and disable kube-proxy",
        unit=host.data.kube_proxy_unit,
    )

    # Cilium's kube-proxy replacement guide: what kube-proxy leaves in iptables goes too.
    kube_proxy_rules_absent(name="Remove kube-proxy's iptables leftovers")

    cni_configs_absent(
        name="Remove the old CNI configurations and restart kubelet",
        conf_dir=host.data.cni_conf_dir,
        backup_dir=host.data.cni_backup_dir,
        restart_unit=host.data.kubelet_unit,
    )

# Installing Cilium, once no node runs kube-proxy or the old CNI any more

phase_reached(name="Every node is off kube-proxy and the old CNI", phase="the nodes are ready for Cilium")

if "local" in host.groups:
    helm_repository(
        name="Add Cilium's helm repository",
        chart=host.data.cilium_chart,
        version=host.data.cilium_chart_version,
        repo_name=host.data.get("helm_repo_name"),
        repo_url=host.data.get("helm_repo_url"),
    )

    cilium_release(
        name="Install Cilium with helm",
        release=host.data.cilium_release,
        namespace=host.data.cilium_namespace,
        chart=host.data.cilium_chart,
        version=host.data.cilium_chart_version,
        values=host.data.cilium_values,
        repo_name=host.data.get("helm_repo_name"),
        repo_url=host.data.get("helm_repo_url"),
        kubeconfig=host.data.get("kubeconfig"),
        context=host.data.get("kube_context"),
        extra_args=host.data.get("helm_extra_args", []),
    )

    cilium_healthy(
        name="Wait until the cilium and cilium-operator pods are up",
        namespace=host.data.cilium_namespace,
        kubeconfig=host.data.get("kubeconfig"),
        context=host.data.get("kube_context"),
        timeout=host.data.get("cilium_wait_timeout", 600),
    )

    old_cni_pods_restarted(
        name="Restart the pods started with the previous CNI",
        namespace=host.data.cilium_namespace,
        kubeconfig=host.data.get("kubeconfig"),
        context=host.data.get("kube_context"),
    )

# Cleaning up: Cilium's overlay carries pod traffic now

phase_reached(name="Cilium runs on every node", phase="the old network's last pieces can go")

if "local" in host.groups and (routes := pod_routes(state.inventory)):
    pod_cidr_routes_absent(
        name="Delete the host routes to the pod CIDRs",
        routes=routes,
        _sudo=host.data.get("host_routes_sudo", True),
    )

if is_node:
    br_netfilter_absent(
        name="Unload br_netfilter and stop loading it at boot",
        backup_dir=host.data.modules_backup_dir,
        # Not while Cilium is not healthy (the workstation's part failed): kept for a re-run.
        _if=workstation_ok,
    )

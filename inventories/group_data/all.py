# Data every host shares. Nothing here is in code: change it here, or override it per group or host.

# The guide logs in as ubuntu and uses sudo on the nodes.
ssh_user = "ubuntu"
_sudo = True

# Units the guide installs in /etc/systemd/system/.
kube_proxy_unit = "kube-proxy.service"
kubelet_unit = "kubelet.service"
# What kube-proxy's unit was before the migration (enabled, disabled, masked; running or not),
# recorded once; the rollback gives it back exactly that.
units_record_dir = "/var/backups/cilium-lab/units"

# CNI configuration: the directory kubelet reads, and where the old files go (never deleted).
cni_conf_dir = "/etc/cni/net.d"
cni_backup_dir = "/var/backups/cilium-lab/cni"

# br_netfilter persistence files are recorded (type, link target, mode, owner, SHA-256, the lines
# removed) and copied here before a line is removed from them; the rollback gives them back exactly.
modules_backup_dir = "/var/backups/cilium-lab/modules-load.d"
# Where the rollback persists br_netfilter when no file and no backup of one did.
modules_persist_file = "/etc/modules-load.d/br_netfilter.conf"

# Cilium's chart values as the chapter sets them; the nodes read k8sServiceHost/Port too. Every
# key must be one of the chart's (the preflight checks it): the seed's `cgroup.automount.enabled`
# is not, and the chart ignores it silently (its agents would still mount cgroup2 themselves);
# the chart spells it autoMount. kubeProxyReplacement must stay true: the nodes lose kube-proxy.
cilium_values = {
    "kubeProxyReplacement": True,
    "k8sServiceHost": "kubernetes",
    "k8sServicePort": 6443,
    "cgroup": {"autoMount": {"enabled": False}, "hostRoot": "/sys/fs/cgroup"},
}

# A lab's own chart values, merged over cilium_values key by key: the simulated lab's real data
# plane points the chart at its own registry's images here. An air-gapped lab sets the same keys
# (image.override, operator.image.override, useDigest) to its registry's images.
cilium_values_overrides = {}

# Each run holds this file's lock on every node while it runs (through its SSH connection), so two
# runs never change a node at once; /run/lock is writable by every user on Debian and Ubuntu.
node_lock_file = "/run/lock/cilium-lab.lock"

# The oldest kernel the pinned Cilium release (local.py: cilium_chart_version) supports: Cilium
# 1.18 and later need Linux 5.10 (their "System Requirements").
cilium_min_kernel = "5.10"
# Preflight checks to skip, for those who know better: sudo, systemd, kernel, cgroup, api_name, api_port.
preflight_skip = []

# What Cilium's agent leaves on a node once it is uninstalled, which the rollback removes as
# cilium-dbg post-uninstall-cleanup does: where the bpffs is mounted (the chart's bpf.root; its
# pins keep the agent's eBPF programs attached) and the agent's state directories.
cilium_bpffs_root = "/sys/fs/bpf"
cilium_state_dirs = ["/var/run/cilium", "/var/lib/cilium"]

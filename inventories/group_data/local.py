# The workstation: it runs helm and the Kubernetes client, and holds the host routes to the pod CIDRs.
# Commands here run as the user who runs pyinfra, not through sudo.
_sudo = False

helm_repo_name = "cilium"
helm_repo_url = "https://helm.cilium.io/"
# A repository chart ("cilium/cilium"), a local chart directory, a .tgz or an oci:// reference.
cilium_chart = "cilium/cilium"
cilium_chart_version = "1.19.6"
cilium_release = "cilium"
cilium_namespace = "kube-system"

# None means helm's and the client's own defaults (KUBECONFIG, then ~/.kube/config; current context).
kubeconfig = None
kube_context = None

# More `helm upgrade --install` flags, e.g. ["--wait"]. With "--create-namespace", a
# cilium_namespace that does not exist yet is created by helm instead of refused.
helm_extra_args = []

# A release already there is upgraded only as Cilium supports it: the same chart, the same
# version or one minor up, never down, and without dropping values a hand-made revision set that
# cilium_values does not hold. Anything else stops the run before the first change, naming both
# versions or each key. True takes the release over anyway, for those who know better (a
# downgrade Cilium's upgrade notes allow, values to drop on purpose). A release left pending by
# a killed helm is refused whatever this says: run the `helm rollback` the refusal names.
cilium_release_takeover = False
# Seconds to wait for Cilium's agents and operator before the deploy fails with a per-node report.
cilium_wait_timeout = 600
# Seconds one wait of the pods' restart may take: for a PodDisruptionBudget to allow the next
# eviction, or for a controller's Ready replacement of the pod evicted before. Then the run stops,
# naming the budget or the controller.
pod_restart_timeout = 300

# Extra `helm uninstall` flags for deploys/rollback.py: wait until Cilium's agents are gone before
# the nodes get their old CNI configurations back (a running agent would rename them).
helm_uninstall_args = ["--wait"]

# The routes to the pod CIDRs (each node's pod_cidr via its pod_route_via, default ssh_hostname)
# change through sudo: set it False when pyinfra already runs as root.
host_routes_sudo = True

# The image `cilium-lab connectivity --image` runs: Kubernetes' own e2e test image (agnhost), at the
# tag k8s.io/kubernetes v1.34.4's e2e tests pin. An air-gapped cluster names its own registry's copy.
connectivity_image = "registry.k8s.io/e2e-test-images/agnhost:2.56"

"""cilium-lab: move a hand-built Kubernetes cluster from kube-proxy and the default CNI to Cilium."""

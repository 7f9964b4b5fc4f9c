"""
kwok (sigs.k8s.io/kwok) playing the kubelets: the stand-in where no real kubelet can run here.

In the sim each node's ``kubelet.service`` runs kwok for that node alone, so a node that is
powered off stops renewing its lease and its Node goes NotReady, as with a real kubelet. kwok
runs no containers: a pod it plays is Running and Ready with an address, and nothing more.
"""

from __future__ import annotations

# Seconds of a node's lease; kwok renews it well within (the node controller's grace period is
# controlplane.NODE_MONITOR_GRACE).
LEASE_SECONDS = 8


def argv(
    binary: str, kubeconfig_path: str, stages: str, node: str | None, node_ip: str | None
) -> list[str]:
    """kwok playing one node's kubelet (``node``), or every node's (None)."""
    command = [
        binary,
        f"--kubeconfig={kubeconfig_path}",
        f"--config={stages}",
        f"--node-lease-duration-seconds={LEASE_SECONDS}",
    ]
    command.append(f"--manage-single-node={node}" if node else "--manage-all-nodes=true")
    if node_ip:
        command.append(f"--node-ip={node_ip}")
    return command


# kwok's stages: how a node it plays and the pods bound to it change. Our own, as small as the
# migration needs: nodes report Ready with room for every pod; a pod becomes Running and Ready
# (a host-network one with its node's IP, others with an address from the node's pod CIDR) and
# keeps its address and start time when it turns Ready again after its node was away; a deleted
# pod goes once its grace period starts, as a kubelet lets it go.
STAGES = """\
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: cilium-lab-node-ready
spec:
  resourceRef: {apiGroup: v1, kind: Node}
  selector:
    matchExpressions:
    - {key: '.status.conditions.[] | select( .type == "Ready" ) | .status', operator: NotIn, values: ['True']}
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      {{ range NodeConditions }}
      - lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $now | Quote }}
        message: {{ .message | Quote }}
        reason: {{ .reason | Quote }}
        status: {{ .status | Quote }}
        type: {{ .type | Quote }}
      {{ end }}
      allocatable: {cpu: "64", memory: 256Gi, pods: "250"}
      capacity: {cpu: "64", memory: 256Gi, pods: "250"}
      nodeInfo:
        architecture: amd64
        kubeletVersion: kwok
        operatingSystem: linux
      phase: Running
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: cilium-lab-pod-ready
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: '.metadata.deletionTimestamp', operator: DoesNotExist}
    - {key: '.status.phase', operator: In, values: [Pending, Running]}
    - {key: '.status.conditions.[] | select( .type == "Ready" ) | .status', operator: NotIn, values: ['True']}
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      - {type: Initialized, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: PodScheduled, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: ContainersReady, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: Ready, status: "True", lastTransitionTime: {{ $now | Quote }}}
      containerStatuses:
      {{ range .spec.containers }}
      - {name: {{ .name | Quote }}, image: {{ .image | Quote }}, ready: true, restartCount: 0, started: true,
         state: {running: {startedAt: {{ $now | Quote }}}}}
      {{ end }}
      {{ with NodeIPsWith .spec.nodeName }}
      hostIP: {{ index . 0 | Quote }}
      {{ end }}
      {{ if .status.podIP }}
      podIP: {{ .status.podIP | Quote }}
      {{ else }}
      {{ with PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
      podIP: {{ index . 0 | Quote }}
      podIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      {{ end }}
      phase: Running
      startTime: {{ or .status.startTime $now | Quote }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: cilium-lab-pod-delete
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: '.metadata.deletionTimestamp', operator: Exists}
  next:
    finalizers: {empty: true}
    delete: true
"""


def kubelet_dropin(command: list[str]) -> str:
    """A drop-in for the guide's ``kubelet.service`` that runs kwok in its place."""
    return (
        "# cilium-lab sim: kwok plays this node's kubelet, after writing the kubelet's iptables chains.\n"
        "[Service]\nExecStartPre=/usr/local/lib/cilium-lab/kubelet-iptables\nExecStart=\nExecStart="
        + " ".join(command)
        + "\n"
    )

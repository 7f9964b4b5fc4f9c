"""
The cluster's state as JSON, for the deploy's facts (``cilium-lab status --output json``):
the helm repository, the release, Cilium's health, and the pods from the old CNI.
Only reads: helm's list/get/history/search/show/template and the Kubernetes API's get/list.
"""

from __future__ import annotations

from kubernetes.client.rest import ApiException

from cilium_lab.cluster import ClusterError, helm, kube, pods, verify
from cilium_lab.cluster.helm_args import chart_kind, values_document

CHECKS = ("repo", "release", "installed", "health", "pods")


def reach(cluster: kube.Cluster) -> None:
    """One cheap request, so an unreachable server is named before helm says it its own way."""
    cluster.get("/api/v1/nodes", limit=1)


def repo(chart: str, version: str | None, repo_name: str | None, repo_url: str | None) -> dict:
    helm_path = helm.find_helm()
    kind = chart_kind(chart)
    state = {
        "helm": helm_path,
        "kind": kind,
        "needed": kind == "repo" and bool(repo_name and repo_url),
    }
    if state["needed"]:
        if chart.split("/")[0] != repo_name:
            raise ClusterError(
                f"chart {chart} is not in the repository {repo_name} that helm_repo_name names"
            )
        state.update(helm.repository(helm_path, repo_name, repo_url, chart, version))
    return state


def require_cluster_info(cluster: kube.Cluster) -> None:
    """``k8sServiceHost: auto`` makes Cilium's agents read the API server's address from
    ``kube-public/cluster-info``, which kubeadm writes and hand-built clusters lack."""
    try:
        cluster.get("/api/v1/namespaces/kube-public/configmaps/cluster-info")
    except ApiException as error:
        if error.status != 404:
            raise ClusterError(
                f"cannot read kube-public/cluster-info on {cluster.server}: "
                f"{error.status} {error.reason}"
            ) from None
        raise ClusterError(
            "cilium_values k8sServiceHost is 'auto', but the cluster has no kube-public/cluster-info "
            "to take the API server's address from (hand-built clusters have none): set "
            "k8sServiceHost and k8sServicePort to the address every node reaches the API server by"
        ) from None


def release(
    cluster: kube.Cluster,
    name: str,
    namespace: str,
    chart: str,
    version: str | None,
    values: dict,
    repo_name=None,
    repo_url=None,
    kubeconfig=None,
    context=None,
) -> dict:
    if isinstance(values, dict) and values.get("k8sServiceHost") == "auto":
        require_cluster_info(cluster)
    helm_path = helm.find_helm()
    installed = helm.release(helm_path, name, namespace, kubeconfig, context)
    source = helm.chart_source(helm_path, chart, repo_name, repo_url)
    kind = chart_kind(chart)
    desired_version = version
    if kind == "path":
        desired_version = helm.chart_version(helm_path, source, version)

    changes = release_changes(installed, name, namespace, desired_version, values)
    if changes:
        # Before anything changes: the chart and version exist, and helm takes the values.
        if kind != "path":
            helm.chart_version(helm_path, source, version)
        helm.check_values(helm_path, source, version, values, name, namespace)

    return {
        "helm": helm_path,
        "server": cluster.server,
        "installed": installed,
        "desired": {"chart": chart, "kind": kind, "version": desired_version, "values": values},
        "matches": not changes,
        "changes": changes,
    }


def release_changes(
    installed: dict, name: str, namespace: str, version: str | None, values: dict
) -> list[str]:
    """What differs between the release as helm reports it (:func:`helm.release`) and the wanted
    chart version and values, one line each; empty when nothing does."""
    if not installed["exists"]:
        return [f"install {name} in {namespace}"]
    changes = []
    if installed["status"] != "deployed":
        changes.append(f"release is {installed['status']}")
    if version and installed["version"] != version:
        changes.append(f"chart version {installed['version']} -> {version}")
    if values_document(installed["values"]) != values_document(values):
        changes.append(
            f"values {values_document(installed['values'])} -> {values_document(values)}"
        )
    return changes


def installed(
    cluster: kube.Cluster, name: str, namespace: str, kubeconfig=None, context=None
) -> dict:
    """The release as helm reports it, without the chart: what removing it needs to know."""
    helm_path = helm.find_helm()
    return {
        "helm": helm_path,
        "server": cluster.server,
        "installed": helm.release(helm_path, name, namespace, kubeconfig, context),
    }


def health(cluster: kube.Cluster, namespace: str) -> dict:
    return verify.snapshot(cluster, namespace).as_dict()


def old_pods(
    cluster: kube.Cluster, release: str, namespace: str, kubeconfig=None, context=None
) -> dict:
    """The old CNI's pods: those a run restarts, and those it leaves, with why."""
    return pods.split(pods.find(cluster, release, namespace, kubeconfig, context))

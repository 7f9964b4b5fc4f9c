"""
The cluster's state as JSON, for the deploy's facts (``cilium-lab status --output json``):
the helm repository, the release, Cilium's health, and the pods from the old CNI.
Only reads: helm's records of the release through the Kubernetes API (helm_records.py), helm's
search/show/template, and the Kubernetes API's get/list.
"""

from __future__ import annotations

import functools

from kubernetes.client.rest import ApiException

from cilium_lab.cluster import ClusterError, chart_keys, helm, kube, pods, release_rules, verify
from cilium_lab.cluster.helm_args import chart_kind, values_document
from cilium_lab.cluster.helm_records import ReleaseRecords

CHECKS = ("repo", "release", "installed", "health", "pods")


def reach(cluster: kube.Cluster) -> None:
    """One cheap request, so an unreachable server is named before helm says it its own way."""
    cluster.get("/api/v1/nodes", limit=1)


def repo(
    chart: str,
    version: str | None,
    repo_name: str | None,
    repo_url: str | None,
    known: helm.Repositories | None = None,
) -> dict:
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
        state.update(helm.repository(helm_path, repo_name, repo_url, chart, version, known))
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


def require_namespace(cluster: kube.Cluster, namespace: str) -> None:
    """helm installs into an existing namespace unless told ``--create-namespace``."""
    try:
        cluster.get(f"/api/v1/namespaces/{namespace}")
    except ApiException as error:
        if error.status != 404:
            raise ClusterError(
                f"cannot read the namespace {namespace} on {cluster.server}: "
                f"{error.status} {error.reason}"
            ) from None
        raise ClusterError(
            f"cilium_namespace {namespace} does not exist on {cluster.server}: create it, or add "
            "--create-namespace to helm_extra_args for helm to create it"
        ) from None


def reference_name(chart: str) -> str | None:
    """The chart's name as a ``repo/chart`` or oci:// reference spells it (a chart directory
    or .tgz says its own in Chart.yaml)."""
    kind = chart_kind(chart)
    if kind == "repo":
        return chart.split("/")[1]
    if kind == "oci":
        return chart.rstrip("/").rsplit("/", 1)[-1].split(":")[0].split("@")[0]
    return None


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
    takeover: bool = False,
    create_namespace: bool = False,
    known: helm.Repositories | None = None,
    records: ReleaseRecords | None = None,
) -> dict:
    """The release against the wanted one. Everything that would make the install fail or do
    what the user did not declare is refused here, before any node changes: a pending release,
    a downgrade, a skip of minors, another chart's release, values set by hand that the upgrade
    would drop (those three unless ``takeover``), a missing namespace, keys the chart does not
    know, values helm rejects. The chart is read only when the release would change."""
    if isinstance(values, dict) and values.get("k8sServiceHost") == "auto":
        require_cluster_info(cluster)
    helm_path = helm.find_helm()
    records = records or ReleaseRecords(cluster, helm_path, name, namespace, kubeconfig, context)
    installed = records.release()
    # ``known``: the repository check's `helm repo list`, when the two run in one read.
    source = helm.chart_source(helm_path, chart, repo_name, repo_url, known)
    kind = chart_kind(chart)
    desired_version = version
    chart_name = reference_name(chart)
    if kind == "path":
        chart_name, desired_version = helm.chart_metadata(helm_path, source, version)

    history = records.history

    @functools.cache
    def shape() -> dict:
        return chart_keys.chart_shape(
            chart_name, desired_version, lambda: helm.chart_values(helm_path, source, version)
        )

    where = f"{namespace}/{name}"
    taken_over = []
    if installed["exists"] and str(installed["status"]).startswith("pending"):
        raise ClusterError(release_rules.pending_problem(name, namespace, installed, history()))
    if installed["exists"]:
        problem = release_rules.version_problem(where, installed, chart_name, desired_version)
        taken_over.append(release_rules.refuse(problem, takeover))

    changes = release_changes(installed, name, namespace, desired_version, values)
    if changes and installed["exists"]:
        dropped = release_rules.dropped_keys(installed["values"], values)
        revisions = history() if dropped or installed["status"] == "failed" else []
        if installed["status"] == "failed":
            back = release_rules.way_back(name, namespace, revisions, installed["revision"])
            changes[changes.index("release is failed")] = (
                f"release is failed (revision {installed['revision']}): the upgrade replaces it "
                f"(to go back instead: {back})"
            )
        if dropped and not (revisions and release_rules.ours(revisions[-1], revisions)):
            mine = release_rules.last_ours(revisions)
            our_values = records.values(mine) if mine else None
            hand = release_rules.hand_set(dropped, installed["values"], revisions, our_values)
            # A key the pinned chart does not know would do nothing if kept: dropping it loses
            # nothing (the seed's cgroup.automount, set by an older cilium-lab or by hand).
            hand = [key for key in hand if chart_keys.known(key, shape())]
            if hand:
                problem = release_rules.hand_set_problem(where, hand)
                taken_over.append(release_rules.refuse(problem, takeover))

    if changes:
        # Before anything changes: the namespace, the chart and version exist, the chart knows
        # every key, and helm takes the values.
        if not installed["exists"] and not create_namespace:
            require_namespace(cluster, namespace)
        if kind != "path":
            helm.chart_metadata(helm_path, source, version)
        chart_keys.check(values, shape(), f"{chart_name} {desired_version or ''}".strip())
        helm.check_values(helm_path, source, version, values, name, namespace)

    return {
        "helm": helm_path,
        "server": cluster.server,
        "installed": installed,
        "desired": {"chart": chart, "kind": kind, "version": desired_version, "values": values},
        "matches": not changes,
        "changes": [line for line in taken_over if line] + changes,
    }


def release_changes(
    installed: dict, name: str, namespace: str, version: str | None, values: dict
) -> list[str]:
    """What differs between the release as helm reports it (:func:`helm.release`) and the wanted
    chart version and values, one line each (a value: its dotted key, old -> new); empty when
    nothing does."""
    if not installed["exists"]:
        return [f"install {name} in {namespace}"]
    changes = []
    if installed["status"] != "deployed":
        changes.append(f"release is {installed['status']}")
    if version and installed["version"] != version:
        changes.append(f"chart version {installed['version']} -> {version}")
    if values_document(installed["values"]) != values_document(values):
        changes += release_rules.value_changes(installed["values"] or {}, values or {}) or [
            "values differ"
        ]
    return changes


def installed(cluster: kube.Cluster, records: ReleaseRecords) -> dict:
    """The release as helm reports it, without the chart: what removing it needs to know."""
    return {"helm": helm.find_helm(), "server": cluster.server, "installed": records.release()}


def health(cluster: kube.Cluster, namespace: str) -> dict:
    return verify.snapshot(cluster, namespace).as_dict()


def old_pods(cluster: kube.Cluster, records: ReleaseRecords) -> dict:
    """The old CNI's pods: those a run restarts, and those it leaves, with why."""
    return pods.split(pods.find(cluster, records))

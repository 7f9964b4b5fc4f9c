"""
The cluster phase, run on the ``local`` host: Cilium's helm repository and release, waiting
until Cilium is healthy, and recreating the pods from the old CNI.

Each operation reads the cluster through a fact (our CLI printing JSON) and yields a ``helm``
or ``cilium-lab`` command only when the fact says something must change, so a re-run reports
no change and makes no new helm revision. pyinfra runs an operation's generator again at
execution time, so the facts are fresh after the steps before it have run.

Given the run's ``cluster_read`` (operations/cluster_read.py), an operation takes its state from
the preflight's one read of the whole cluster while that holds, and tells it when it changes the
cluster; without it, each reads its own fact.
"""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import operation

from cilium_lab.cluster.helm_args import (
    DESCRIPTION,
    helm_cluster_flags,
    local_chart,
    values_document,
)
from facts.cluster_phase import (
    CiliumHealth,
    CiliumPods,
    CiliumRelease,
    HelmRepository,
    InstalledRelease,
    OldCniPods,
    cilium_lab_command,
    cli_cluster_args,
    cli_pod_cidr_args,
)
from operations.cluster_read import ClusterRead
from operations.log_once import log_once

# Said when the cluster phase fails: by then the node phase has taken the old network away.
HALF_MIGRATED = (
    "cilium-lab: the migration stopped half-way: the nodes run without kube-proxy and their old CNI "
    "configurations, and Cilium is not {what}. Fix what is said above and run the deploy again, "
    "or go back with deploys/rollback.py."
)

# Said when the rollback's last step fails: the nodes have their old network back by then.
HALF_ROLLED_BACK = (
    "cilium-lab: the rollback stopped at its last step: the nodes run kube-proxy and their old CNI "
    "again, but pods Cilium addressed are not all recreated (those named above keep addresses "
    "nothing serves any more). Fix what is said above and run deploys/rollback.py again."
)


def _known(cluster_read: ClusterRead | None, section: str, args: dict) -> dict | None:
    return cluster_read.known(section, **args) if cluster_read is not None else None


def _changes(cluster_read: ClusterRead | None, release: bool = False) -> None:
    if cluster_read is not None:
        cluster_read.changed(release=release)


def _shell(*args: str) -> str:
    return " ".join(shlex.quote(a) for a in args)


def install_command(
    helm: str,
    release: str,
    chart: str,
    version: str | None,
    namespace: str,
    values: dict,
    *,
    kubeconfig=None,
    context=None,
    extra_args=(),
) -> str:
    """``helm upgrade --install`` with the values on stdin, as one shell command.

    A chart directory or .tgz gets no ``--version``: it carries its own, which the release fact
    has checked against the pinned one. The revision carries our description, so that a later
    run tells it from one made by hand (``helm history``).
    """
    document = values_document(values)
    args = [
        "upgrade",
        "--install",
        release,
        chart,
        "--namespace",
        namespace,
        *(["--version", version] if version and not local_chart(chart) else []),
        "--values",
        "-",
        "--description",
        DESCRIPTION,
        *helm_cluster_flags(kubeconfig, context),
        *extra_args,
    ]
    return f"printf '%s' {shlex.quote(document)} | {_shell(helm, *args)}"


def _or_half_migrated(command: str, what: str) -> str:
    message = HALF_MIGRATED.format(what=what)
    return f"{command} || {{ echo {shlex.quote(message)} >&2; exit 1; }}"


@operation()
def helm_repository(
    chart: str,
    version: str | None,
    repo_name: str,
    repo_url: str,
    cluster_read: ClusterRead | None = None,
):
    """
    Add the chart's helm repository, or update its index, only when needed.

    + chart: ``repo/chart``; a chart directory, .tgz or oci:// reference needs no repository
    + version: the pinned chart version; the index is updated when it does not list it
    + repo_name: the repository's name for helm (the part of ``chart`` before the slash)
    + repo_url: its URL; a repository with another URL is re-added with this one
    + cluster_read: the run's read of the cluster, used while it holds; None to read the fact

    **Example:**

    .. code:: python

        helm_repository(
            name="Add Cilium's helm repository",
            chart="cilium/cilium",
            version="1.16.5",
            repo_name="cilium",
            repo_url="https://helm.cilium.io/",
        )
    """

    args = dict(chart=chart, version=version, repo_name=repo_name, repo_url=repo_url)
    state = _known(cluster_read, "repo", args) or host.get_fact(HelmRepository, **args)
    helm = state["helm"]

    if not state["needed"]:
        host.noop(f"chart {chart} needs no helm repository")
        return

    if state["present"] and state["url_matches"] and state["version_cached"]:
        host.noop(f"helm repository {repo_name} lists {chart} {version}")
        return

    _changes(cluster_read)
    if not state["present"]:
        yield _shell(helm, "repo", "add", repo_name, repo_url)
    elif not state["url_matches"]:
        log_once(f"helm repository {repo_name} points to {state.get('url')}, not {repo_url}")
        yield _shell(helm, "repo", "add", "--force-update", repo_name, repo_url)
    elif not state["version_cached"]:
        log_once(f"helm's index of {repo_name} does not list {chart} {version}")
        yield _shell(helm, "repo", "update", repo_name)


@operation()
def cilium_release(
    release: str,
    namespace: str,
    chart: str,
    version: str | None,
    values: dict,
    repo_name: str | None = None,
    repo_url: str | None = None,
    kubeconfig: str | None = None,
    context: str | None = None,
    extra_args: list[str] | tuple = (),
    takeover: bool = False,
    cluster_read: ClusterRead | None = None,
):
    """
    Install or upgrade Cilium's release with the chart version and values given.

    + release: the release's name (``cilium``)
    + namespace: its namespace (``kube-system``)
    + chart: ``repo/chart``, a chart directory, a .tgz or an oci:// reference
    + version: the chart version (for a directory or .tgz: checked against the chart's own)
    + values: the chart's values, as a mapping; passed to helm as one document on stdin
    + repo_name, repo_url: the repository, to check a chart before the repository is added
    + kubeconfig, context: the cluster; None for helm's defaults
    + extra_args: more ``helm upgrade`` flags, for example ``["--wait"]``
    + takeover: upgrade a release of another chart, a downgrade, a skip of minors or values set
      by hand anyway (refused by the release fact otherwise)
    + cluster_read: the run's read of the cluster, used while it holds; None to read the fact

    Nothing runs when helm reports the release deployed with this chart version and exactly
    these values.

    **Example:**

    .. code:: python

        cilium_release(
            name="Install Cilium",
            release="cilium",
            namespace="kube-system",
            chart="cilium/cilium",
            version="1.16.5",
            values={"kubeProxyReplacement": True, "k8sServiceHost": "kubernetes"},
        )
    """

    args = dict(
        release=release,
        namespace=namespace,
        chart=chart,
        version=version,
        values=values,
        repo_name=repo_name,
        repo_url=repo_url,
        kubeconfig=kubeconfig,
        context=context,
        extra_args=list(extra_args),
        takeover=takeover,
    )
    state = _known(cluster_read, "release", args) or host.get_fact(CiliumRelease, **args)
    installed = state["installed"]

    if state["matches"]:
        host.noop(
            f"release {namespace}/{release} is {installed['status']} with chart "
            f"{installed['chart']} {installed['version']} and the values"
        )
        return

    _changes(cluster_read, release=True)
    for change in state["changes"]:
        log_once(f"release {namespace}/{release}: {change}")
    yield _or_half_migrated(
        install_command(
            state["helm"],
            release,
            chart,
            version,
            namespace,
            values,
            kubeconfig=kubeconfig,
            context=context,
            extra_args=list(extra_args),
        ),
        "installed",
    )


@operation()
def cilium_healthy(
    namespace: str,
    kubeconfig: str | None = None,
    context: str | None = None,
    timeout: float = 600,
    cluster_read: ClusterRead | None = None,
):
    """
    Wait until Cilium runs on every node: agents ready with their nodes' IPs, operator available.
    After an install or upgrade in the same run (which ``cluster_read`` knows of) it always
    waits; otherwise only when Cilium is not healthy now.

    + namespace: Cilium's namespace
    + kubeconfig, context: the cluster; None for the client's defaults
    + timeout: seconds to wait; then the command prints, per node, what is missing and fails
    + cluster_read: the run's read of the cluster, used while it holds; None to read the fact

    **Example:**

    .. code:: python

        cilium_healthy(
            name="Wait for the Cilium agents and operator",
            namespace="kube-system",
            timeout=600,
        )
    """

    wait = _or_half_migrated(
        cilium_lab_command(
            "verify",
            "--wait",
            "--timeout",
            f"{float(timeout):g}",
            *cli_cluster_args(namespace, kubeconfig, context),
        ),
        "healthy",
    )
    if cluster_read is not None and cluster_read.release_changes:
        # Always waited for, not only when found unhealthy a moment after helm returned: what
        # --dry plans is then what the run does, however fast the agents come up.
        log_once(
            "the release changes in this run: wait until Cilium runs its new version on every node"
        )
        yield wait
        return

    args = dict(namespace=namespace, kubeconfig=kubeconfig, context=context)
    health = _known(cluster_read, "health", args) or host.get_fact(CiliumHealth, **args)

    if health["healthy"]:
        host.noop(f"Cilium is healthy on all {len(health['nodes'])} nodes")
        return

    _changes(cluster_read)
    log_once(
        f"Cilium is not healthy yet: agents ready {health.get('agents_ready', 0)}/"
        f"{len(health['nodes'])}"
    )
    yield wait


@operation()
def old_cni_pods_restarted(
    release: str,
    namespace: str,
    timeout: float,
    kubeconfig: str | None = None,
    context: str | None = None,
    cluster_read: ClusterRead | None = None,
):
    """
    Evict the pods the old CNI left that a controller recreates, so they come back with Cilium's
    addresses: one pod of each controller at a time, each after the Ready replacement of the one
    before, as their PodDisruptionBudgets allow. Pods Cilium manages are never restarted; a
    running Job's pods, static pods and pods without a controller are named, never evicted.

    + release: Cilium's release (its history dates it on a cluster without Cilium's resources)
    + namespace: Cilium's namespace (the release's, and its agents')
    + timeout: seconds one wait may take (a budget to allow an eviction, a Ready replacement);
      then the run stops half-way, naming what it waited for
    + kubeconfig, context: the cluster; None for the client's defaults
    + cluster_read: the run's read of the cluster, used while it holds; None to read the fact

    **Example:**

    .. code:: python

        old_cni_pods_restarted(
            name="Restart the pods started with the previous CNI",
            release="cilium",
            namespace="kube-system",
            timeout=300,
        )
    """

    args = dict(release=release, namespace=namespace, kubeconfig=kubeconfig, context=context)
    found = _known(cluster_read, "pods", args) or host.get_fact(OldCniPods, **args)

    for pod in found["left"]:
        log_once(pod["advice"], warn=True)

    if not found["restart"]:
        host.noop("no pod from the old CNI for a controller to recreate")
        return

    _changes(cluster_read)
    for pod in found["restart"]:
        log_once(
            f"evict pod {pod['namespace']}/{pod['name']} on {pod['node']} ({pod['owner']} "
            f"recreates it): {pod['reason']}"
        )
    yield _or_half_migrated(
        cilium_lab_command(
            "restart-pods",
            "--yes",
            "--release",
            release,
            "--timeout",
            f"{float(timeout):g}",
            *cli_cluster_args(namespace, kubeconfig, context),
        ),
        "serving the pods named above yet: they keep their old addresses",
    )


@operation()
def cilium_release_absent(
    release: str,
    namespace: str,
    kubeconfig: str | None = None,
    context: str | None = None,
    extra_args: list[str] | tuple = (),
):
    """
    Uninstall Cilium's release, when helm has it.

    + release: the release's name (``cilium``)
    + namespace: its namespace (``kube-system``)
    + kubeconfig, context: the cluster; None for helm's defaults
    + extra_args: more ``helm uninstall`` flags, for example ``["--wait"]`` so that the agents are
      gone before the nodes get their old CNI configurations back

    **Example:**

    .. code:: python

        cilium_release_absent(
            name="Uninstall Cilium",
            release="cilium",
            namespace="kube-system",
            extra_args=["--wait"],
        )
    """

    state = host.get_fact(
        InstalledRelease,
        release=release,
        namespace=namespace,
        kubeconfig=kubeconfig,
        context=context,
    )

    if not state["installed"]["exists"]:
        host.noop(f"no release {namespace}/{release}")
        return

    log_once(
        f"uninstall release {namespace}/{release} (chart {state['installed']['chart']} "
        f"{state['installed']['version']})"
    )
    yield _shell(
        state["helm"],
        "uninstall",
        release,
        "--namespace",
        namespace,
        *helm_cluster_flags(kubeconfig, context),
        *extra_args,
    )


@operation()
def cilium_pods_restarted(
    namespace: str,
    timeout: float,
    pod_cidrs: dict[str, str] | None = None,
    kubeconfig: str | None = None,
    context: str | None = None,
):
    """
    The migration's pod restart in reverse: once Cilium is gone and the nodes run their old CNI
    again, evict the pods Cilium addressed that a controller recreates, so they come back on the
    old bridge's addresses. One pod of each controller at a time, each after the Ready
    replacement of the one before, as their PodDisruptionBudgets allow. A running Job's pods,
    static pods and pods without a controller are named, never evicted.

    + namespace: Cilium's namespace (for the CLI's cluster arguments)
    + timeout: seconds one wait may take (a budget to allow an eviction, a Ready replacement)
    + pod_cidrs: node name -> the old CNI's pod CIDR there (the inventory's ``pod_cidr``); a node
      without one is judged by the Node's ``spec.podCIDRs``, else by CiliumEndpoints alone
    + kubeconfig, context: the cluster; None for the client's defaults

    A pod is Cilium's when its IP is outside its node's old pod CIDR, or when a CiliumEndpoint
    lists it (``cilium_lab/cluster/pods.py``; with ``ipam.mode=kubernetes`` only the latter can
    tell). On the kwok lab every pod has an address of its Node's pod CIDR: nothing to restart.

    **Example:**

    .. code:: python

        cilium_pods_restarted(
            name="Recreate the pods Cilium addressed",
            namespace="kube-system",
            timeout=300,
            pod_cidrs={"worker0": "10.4.0.0/16"},
        )
    """

    found = host.get_fact(
        CiliumPods,
        namespace=namespace,
        pod_cidrs=pod_cidrs,
        kubeconfig=kubeconfig,
        context=context,
    )

    for node in found["unranged"]:
        log_once(
            f"no old pod CIDR known for node {node} (no pod_cidr, no spec.podCIDRs): its pods "
            "are judged by their CiliumEndpoints alone",
            warn=True,
        )
    for pod in found["left"]:
        log_once(pod["advice"], warn=True)

    if not found["restart"]:
        host.noop("no pod with an address from Cilium for a controller to recreate")
        return

    for pod in found["restart"]:
        log_once(
            f"evict pod {pod['namespace']}/{pod['name']} on {pod['node']} ({pod['owner']} "
            f"recreates it): {pod['reason']}"
        )
    command = cilium_lab_command(
        "restart-pods",
        "--after-rollback",
        "--yes",
        "--timeout",
        f"{float(timeout):g}",
        *cli_pod_cidr_args(pod_cidrs),
        *cli_cluster_args(namespace, kubeconfig, context),
    )
    yield f"{command} || {{ echo {shlex.quote(HALF_ROLLED_BACK)} >&2; exit 1; }}"

"""
The cluster's side of the migration, read on the ``local`` host (the machine running pyinfra):
the helm repository, the Cilium release, Cilium's health and the pods from the old CNI.

Each fact's command is the project's CLI (``python -m cilium_lab status --output json``), run
as a subprocess with the Python that runs pyinfra (nothing here imports it, and the venv need
not be on PATH). It only reads: helm's list/get/search/show/template and the Kubernetes API's
get/list. When it cannot read (no helm, a bad kubeconfig, an unreachable API server, a chart or
version that does not exist, values helm rejects) it exits non-zero with one line that says so,
and pyinfra stops the host before anything changes.
"""

from __future__ import annotations

import json
import shlex
import sys

from pyinfra.api import FactBase

from cilium_lab.cluster.helm_args import creates_namespace, values_document


def cilium_lab_command(*args: str) -> str:
    """This package's CLI, with the Python that runs pyinfra (the venv need not be on PATH)."""
    return " ".join(shlex.quote(a) for a in [sys.executable, "-m", "cilium_lab", *args])


def cli_cluster_args(namespace, kubeconfig=None, context=None) -> list[str]:
    """The arguments that point the CLI at a cluster and at Cilium's namespace in it."""
    args = ["--namespace", namespace]
    if kubeconfig:
        args += ["--kubeconfig", str(kubeconfig)]
    if context:
        args += ["--context", context]
    return args


def cli_chart_args(chart, version=None, repo_name=None, repo_url=None) -> list[str]:
    """The arguments that name the chart, its version and its repository to the CLI."""
    args = ["--chart", chart]
    if version:
        args += ["--chart-version", version]
    if repo_name and repo_url:
        args += ["--repo-name", repo_name, "--repo-url", repo_url]
    return args


def cli_values_args(values) -> list[str]:
    """The values the release should have, for the CLI."""
    return ["--values-json", values_document(values)]


def cli_release_rule_args(extra_args=(), takeover=False) -> list[str]:
    """What the release check needs of the install's flags and the takeover override."""
    return [
        *(["--create-namespace"] if creates_namespace(extra_args) else []),
        *(["--takeover"] if takeover else []),
    ]


def status_json_command(checks, *options: str) -> str:
    """``cilium-lab status --output json`` for the given checks."""
    return cilium_lab_command(
        "status", "--output", "json", *[a for c in checks for a in ("--check", c)], *options
    )


class _StatusFact(FactBase):
    check = ""

    def process(self, output):
        return json.loads("\n".join(output))[self.check]


class HelmRepository(_StatusFact):
    """
    Returns whether helm knows the chart's repository at its URL, with the pinned version in
    its cached index. ``needed`` is false for a chart directory, a .tgz or an oci:// chart.

    .. code:: python

        {
            "helm": "/usr/local/bin/helm",
            "kind": "repo",
            "needed": True,
            "name": "cilium",
            "url": "https://helm.cilium.io/",
            "present": True,
            "url_matches": True,
            "version_cached": True,
        }
    """

    check = "repo"

    @staticmethod
    def default():
        return {
            "helm": "helm",
            "kind": "repo",
            "needed": True,
            "present": False,
            "url_matches": False,
            "version_cached": False,
        }

    def command(self, chart, version, repo_name, repo_url):
        return status_json_command(["repo"], *cli_chart_args(chart, version, repo_name, repo_url))


class ClusterState(FactBase):
    """
    Returns, in one command (one Python started), what the four facts below return: the
    repository, the release, Cilium's health and the pods from the old CNI, keyed ``repo``,
    ``release``, ``health`` and ``pods``. The preflight reads it once per run; the cluster
    operations use it until one of them changes the cluster, so a no-change re-run starts one
    interpreter for the whole cluster phase.

    .. code:: python

        {"repo": {...}, "release": {...}, "health": {...}, "pods": {...}}
    """

    @staticmethod
    def default():
        return {}

    def command(
        self,
        release,
        namespace,
        chart,
        version,
        values,
        repo_name=None,
        repo_url=None,
        kubeconfig=None,
        context=None,
        extra_args=(),
        takeover=False,
    ):
        return status_json_command(
            ["repo", "release", "health", "pods"],
            "--release",
            release,
            *cli_values_args(values),
            *cli_chart_args(chart, version, repo_name, repo_url),
            *cli_cluster_args(namespace, kubeconfig, context),
            *cli_release_rule_args(extra_args, takeover),
        )

    def process(self, output):
        return json.loads("\n".join(output))


class CiliumRelease(_StatusFact):
    """
    Returns the Cilium release as helm reports it (status, chart version, values) and whether it
    matches the wanted chart version and values; ``changes`` says what differs, a value per
    dotted key. When something differs, the command has already checked that the namespace, the
    chart and version exist, that the chart knows every key and that helm takes the values
    (``helm show chart``, ``helm show values``, cached, and ``helm template``), so installing
    can only fail in the cluster. It refuses (exits 2, one line) a pending release, a downgrade,
    a skip of more than one minor, another chart's release and values set by hand that the
    upgrade would drop, the last three unless ``takeover``.

    .. code:: python

        {
            "helm": "/usr/local/bin/helm",
            "server": "https://kubernetes:6443",
            "installed": {"exists": True, "status": "deployed", "chart": "cilium",
                          "version": "1.16.5", "revision": 1, "values": {...}},
            "desired": {"chart": "cilium/cilium", "kind": "repo", "version": "1.16.5",
                        "values": {...}},
            "matches": True,
            "changes": [],
        }
    """

    check = "release"

    @staticmethod
    def default():
        return {
            "helm": "helm",
            "installed": {"exists": False},
            "matches": False,
            "changes": ["no release information"],
        }

    def command(
        self,
        release,
        namespace,
        chart,
        version,
        values,
        repo_name=None,
        repo_url=None,
        kubeconfig=None,
        context=None,
        extra_args=(),
        takeover=False,
    ):
        return status_json_command(
            ["release"],
            "--release",
            release,
            *cli_values_args(values),
            *cli_chart_args(chart, version, repo_name, repo_url),
            *cli_cluster_args(namespace, kubeconfig, context),
            *cli_release_rule_args(extra_args, takeover),
        )


class InstalledRelease(_StatusFact):
    """
    Returns a helm release as helm reports it, without looking at any chart: what removing the
    release needs to know.

    .. code:: python

        {
            "helm": "/usr/local/bin/helm",
            "server": "https://kubernetes:6443",
            "installed": {"exists": True, "status": "deployed", "chart": "cilium",
                          "version": "1.16.5", "revision": 1, "values": {...}},
        }
    """

    check = "installed"

    @staticmethod
    def default():
        return {"helm": "helm", "installed": {"exists": False}}

    def command(self, release, namespace, kubeconfig=None, context=None):
        return status_json_command(
            ["installed"], "--release", release, *cli_cluster_args(namespace, kubeconfig, context)
        )


class CiliumHealth(_StatusFact):
    """
    Returns, without waiting, whether Cilium is healthy: the agent DaemonSet ready on every
    node, every agent on hostNetwork with its node's InternalIP, the operator available, and
    every node Ready; per node, what is missing.

    .. code:: python

        {
            "healthy": False,
            "agents_ready": 5, "nodes_ready": 5,
            "nodes": [{"node": "worker2", "missing": ["no cilium agent pod scheduled"], ...}],
            "daemonset": {...}, "operator": {...}, "problems": [...],
        }
    """

    check = "health"

    @staticmethod
    def default():
        return {"healthy": False, "nodes": [], "problems": ["no health information"]}

    def command(self, namespace, kubeconfig=None, context=None):
        return status_json_command(["health"], *cli_cluster_args(namespace, kubeconfig, context))


class OldCniPods(_StatusFact):
    """
    Returns the pods the old CNI left (those Cilium does not manage: ``cilium_lab/cluster/pods.py``
    says by which signal), split into those a run restarts (``restart``: a controller recreates
    them) and those it leaves (``left``: a running Job's, a static pod, a pod without a
    controller), each with why it is the old CNI's and its ``action``.

    .. code:: python

        {
            "restart": [{"namespace": "default", "name": "web-5d9c-x2x", "node": "worker0",
                         "ip": "10.4.0.7", "owner": "ReplicaSet/web-5d9c", "action": "evict",
                         "reason": "created ..., before the release kube-system/cilium was first
                                    deployed (...)", "uid": "...", "owner_uid": "..."}],
            "left": [],
        }
    """

    check = "pods"

    @staticmethod
    def default():
        return {"restart": [], "left": []}

    def command(self, release, namespace, kubeconfig=None, context=None):
        return status_json_command(
            ["pods"], "--release", release, *cli_cluster_args(namespace, kubeconfig, context)
        )


def cli_pod_cidr_args(pod_cidrs: dict[str, str] | None) -> list[str]:
    """The old CNI's pod CIDR of each node (by name), for ``restart-pods --after-rollback``."""
    return [
        a
        for node, cidr in sorted((pod_cidrs or {}).items())
        for a in ("--pod-cidr", f"{node}={cidr}")
    ]


class CiliumPods(FactBase):
    """
    Returns, once Cilium is gone (the rollback), the pods Cilium addressed: an IP outside its
    node's old pod CIDR, or a CiliumEndpoint that lists it (``cilium_lab/cluster/pods.py``,
    :func:`find_after_rollback`), split like :class:`OldCniPods`, and the nodes whose old pod
    CIDR is not known (``unranged``). It only reads: ``restart-pods`` without ``--yes``.

    .. code:: python

        {
            "restart": [{"namespace": "default", "name": "web-5d9c-x2x", "node": "worker0",
                         "ip": "10.0.3.7", "owner": "ReplicaSet/web-5d9c", "action": "evict",
                         "reason": "IP 10.0.3.7 is outside the old CNI's pod CIDR on worker0
                                    (10.4.0.0/16)", "uid": "...", "owner_uid": "..."}],
            "left": [],
            "unranged": [],
        }
    """

    @staticmethod
    def default():
        return {"restart": [], "left": [], "unranged": []}

    def command(self, namespace, pod_cidrs=None, kubeconfig=None, context=None):
        return cilium_lab_command(
            "restart-pods",
            "--after-rollback",
            "--output",
            "json",
            *cli_pod_cidr_args(pod_cidrs),
            *cli_cluster_args(namespace, kubeconfig, context),
        )

    def process(self, output):
        found = json.loads("\n".join(output))
        return {key: found.get(key, []) for key in ("restart", "left", "unranged")}

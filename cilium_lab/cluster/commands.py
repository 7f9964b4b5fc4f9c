"""
The cluster commands of ``cilium-lab``: verify, restart-pods, status. The deploy runs them too.

Exit codes: 0 done or healthy, 1 not healthy (verify) or a wait of restart-pods past its
timeout (the pods restarted before it are named), 2 an error the user must fix (one line on
stderr, nothing changed).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import sys
from concurrent.futures import ThreadPoolExecutor

import click
from kubernetes.client.rest import ApiException

from cilium_lab.cluster import ClusterError, helm, kube, pods, status, verify
from cilium_lab.cluster.helm_records import ReleaseRecords


def kubeconfig_options(function):
    """--kubeconfig and --context. A plain string: kube.load says in one line what is wrong with
    the file (click's own check of a path prints its usage too)."""
    function = click.option(
        "--context", default=None, help="kubeconfig context (default: its current one)."
    )(function)
    return click.option(
        "--kubeconfig",
        default=None,
        help="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config).",
    )(function)


def cluster_options(function):
    """The cluster and Cilium's namespace in it."""
    return kubeconfig_options(
        click.option(
            "--namespace", default="kube-system", show_default=True, help="Cilium's namespace."
        )(function)
    )


def clear_errors(function):
    """A ClusterError becomes its message on stderr and exit status 2, without a traceback."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except ClusterError as error:
            click.echo(f"cilium-lab: {error}", err=True)
            sys.exit(2)
        except ApiException as error:
            message = error.reason
            try:
                message = json.loads(error.body).get("message", message)
            except (TypeError, ValueError, AttributeError):
                pass
            click.echo(f"cilium-lab: the API server answered {error.status}: {message}", err=True)
            sys.exit(2)

    return wrapper


def output_option(function):
    return click.option(
        "--output", "-o", type=click.Choice(["table", "json"]), default="table", show_default=True
    )(function)


def _progress(line: str) -> None:
    click.echo(f"waiting: {line}", err=True)


def _say(line: str) -> None:
    click.echo(line, err=True)


def health_table(health: verify.Health) -> str:
    rows = [("NODE", "INTERNAL-IP", "NODE", "AGENT", "AGENT-IP", "READY", "MISSING")]
    for n in health.nodes:
        rows.append(
            (
                n.node,
                n.internal_ip or "-",
                "Ready" if n.node_ready else "NotReady",
                n.agent or "-",
                n.agent_ip or "-",
                "yes" if n.agent_ready else "no",
                "; ".join(n.missing) or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[-1] for r in rows
    ]
    lines.append("")
    lines.extend(w.describe() for w in health.workloads)
    for problem in health.problems:
        lines.append(f"problem: {problem}")
    lines.append("healthy" if health.healthy else "NOT healthy")
    return "\n".join(lines)


@click.command("verify")
@cluster_options
@output_option
@click.option("--timeout", type=float, default=600, show_default=True, help="Seconds to wait.")
@click.option(
    "--wait/--no-wait",
    default=True,
    show_default=True,
    help="Wait (watching the API) until healthy or the timeout passes.",
)
@clear_errors
def verify_command(kubeconfig, context, namespace, output, timeout, wait):
    """Check that Cilium's agents run, ready, on every node with the node's IP, and the operator is available."""
    cluster = kube.load(kubeconfig, context)
    if wait:
        health = verify.wait(cluster, namespace, timeout=timeout, progress=_progress)
    else:
        health = verify.snapshot(cluster, namespace)
    if output == "json":
        click.echo(json.dumps(health.as_dict(), indent=2))
    else:
        click.echo(health_table(health))
    if health.failing:
        click.echo(
            f"cilium-lab: Cilium's pods are failing on {cluster.server}; waiting will not help: "
            f"{'; '.join(health.failing)}",
            err=True,
        )
    elif not health.healthy and wait:
        click.echo(
            f"cilium-lab: Cilium is not healthy after {timeout:g}s on {cluster.server}", err=True
        )
    sys.exit(0 if health.healthy else 1)


def _pod_cidr(ctx, param, values) -> dict[str, str]:
    """``NODE=CIDR`` pairs as a mapping; a bad one is a usage error naming it."""
    found = {}
    for value in values:
        node, _, cidr = value.partition("=")
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not NODE=CIDR") from None
        if not node or node in found:
            raise click.BadParameter(f"{value!r}: give each node once, by name")
        found[node] = cidr
    return found


@click.command("restart-pods")
@cluster_options
@output_option
@click.option("--release", "release_name", default="cilium", show_default=True)
@click.option("--yes", is_flag=True, help="Evict the pods that a controller recreates.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=300,
    show_default=True,
    help="Seconds one wait may take: for a budget to allow an eviction, for a Ready replacement.",
)
@click.option(
    "--after-rollback",
    is_flag=True,
    help="The way back: the pods Cilium addressed, once the old CNI runs again.",
)
@click.option(
    "--pod-cidr",
    "pod_cidrs",
    multiple=True,
    callback=_pod_cidr,
    metavar="NODE=CIDR",
    help="With --after-rollback: the old CNI's pod CIDR of a node (repeatable; default: the "
    "Node's spec.podCIDRs).",
)
@clear_errors
def restart_pods_command(
    kubeconfig, context, namespace, output, release_name, yes, timeout, after_rollback, pod_cidrs
):
    """List the pods the old CNI left; with --yes, evict those a controller recreates, one of
    each controller at a time, as their PodDisruptionBudgets allow. With --after-rollback, the
    pods Cilium addressed instead (an IP outside the node's old pod CIDR, or a CiliumEndpoint).

    Exit codes: 0 done, 1 a wait passed the timeout (the pods restarted before are named),
    2 an error the user must fix."""
    if pod_cidrs and not after_rollback:
        raise click.UsageError("--pod-cidr goes with --after-rollback")
    cluster = kube.load(kubeconfig, context)
    whose, unranged = "the old CNI", []
    if after_rollback:
        whose = "Cilium"
        found, unranged = pods.find_after_rollback(cluster, pod_cidrs)
    else:
        records = ReleaseRecords(cluster, None, release_name, namespace, kubeconfig, context)
        found = pods.find(cluster, records)
    if output != "json":
        for node in unranged:
            click.echo(
                f"cilium-lab: no old pod CIDR known for node {node} (no --pod-cidr, no "
                "spec.podCIDRs): its pods are judged by their CiliumEndpoints alone",
                err=True,
            )
    evicted, stopped = [], None
    if yes:
        restart = pods.Restart(cluster, found, timeout, progress=_say, unserved=after_rollback)
        try:
            evicted = restart.run()
        except pods.NotRestarted as error:
            evicted, stopped = restart.done, str(error)
    if output == "json":
        report = {**pods.split(found), "evicted": pods.as_dicts(evicted)}
        if after_rollback:
            report["unranged"] = unranged
        click.echo(json.dumps(report, indent=2))
    elif not found:
        click.echo(f"no pods from {whose}")
    for pod in found if output != "json" else ():
        if not pod.restarts:
            click.echo(f"left: {pod.advice()}")
        elif pod in evicted:
            click.echo(
                f"evicted: {pod.namespace}/{pod.name} on {pod.node} ({pod.owner}): {pod.reason}"
            )
        elif not yes:
            click.echo(
                f"would evict (use --yes): {pod.namespace}/{pod.name} on {pod.node} "
                f"({pod.owner}): {pod.reason}"
            )
        else:
            click.echo(f"not evicted: {pod.namespace}/{pod.name} on {pod.node} ({pod.owner})")
    if stopped:
        click.echo(f"cilium-lab: {stopped}", err=True)
        sys.exit(1)


@click.command("status")
@cluster_options
@output_option
@click.option(
    "--check",
    "checks",
    multiple=True,
    type=click.Choice(status.CHECKS),
    help="What to report (repeatable; default: all).",
)
@click.option("--release", "release_name", default="cilium", show_default=True)
@click.option("--chart", default="cilium/cilium", show_default=True)
@click.option("--chart-version", default=None)
@click.option("--values-json", default="{}", help="The values the release should have, as JSON.")
@click.option("--repo-name", default=None)
@click.option("--repo-url", default=None)
@click.option(
    "--takeover",
    is_flag=True,
    help="Upgrade a release of another chart or version, or with values set by hand, anyway.",
)
@click.option(
    "--create-namespace", is_flag=True, help="helm creates the namespace when it is missing."
)
@clear_errors
def status_command(
    kubeconfig,
    context,
    namespace,
    output,
    checks,
    release_name,
    chart,
    chart_version,
    values_json,
    repo_name,
    repo_url,
    takeover,
    create_namespace,
):
    """Report the helm repository, the release, Cilium's health and the old CNI's pods (read-only)."""
    try:
        values = json.loads(values_json)
    except ValueError as error:
        # json's message gives the position only, never the document (secrets may be there).
        raise ClusterError(f"--values-json is not JSON: {error}") from None
    if not isinstance(values, dict):
        raise ClusterError(f"--values-json is a JSON {type(values).__name__}, not a mapping")
    checks = tuple(dict.fromkeys(checks or status.CHECKS))
    cluster = None
    if set(checks) - {"repo"}:
        cluster = kube.load(kubeconfig, context)
        # One cheap request first, so an unreachable server is named before helm says it its own way.
        status.reach(cluster)
    # One `helm repo list` for the repository check and the release's chart source, and one
    # read of helm's records of the release for the release, installed and pods checks.
    known = helm.Repositories()
    records = cluster and ReleaseRecords(
        cluster, helm.find_helm(), release_name, namespace, kubeconfig, context
    )
    readers = {
        "repo": lambda: status.repo(chart, chart_version, repo_name, repo_url, known),
        "release": lambda: status.release(
            cluster,
            release_name,
            namespace,
            chart,
            chart_version,
            values,
            repo_name,
            repo_url,
            kubeconfig,
            context,
            takeover=takeover,
            create_namespace=create_namespace,
            known=known,
            records=records,
        ),
        "installed": lambda: status.installed(cluster, records),
        "health": lambda: status.health(cluster, namespace),
        "pods": lambda: status.old_pods(cluster, records),
    }
    # Side by side: each waits on helm or the API server, not on this process.
    with ThreadPoolExecutor(max_workers=len(checks)) as pool:
        futures = {check: pool.submit(readers[check]) for check in checks}
    report = {check: future.result() for check, future in futures.items()}
    if output == "json":
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        for key, value in report.items():
            click.echo(f"{key}: {json.dumps(value, default=str)}")

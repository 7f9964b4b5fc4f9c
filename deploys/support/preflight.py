"""
Preflight: every host is checked before the deploy changes any of them.

Nodes are asked for what :class:`NodePreflight` reads; the ``local`` host (the workstation) for
helm, the kubeconfig, the API server, the chart and the values, through the cluster facts.

The deploy file calls :func:`require` for each host while pyinfra prepares the run (so ``--dry``
runs it too). The first call checks the whole inventory at once and every later call reuses the
verdict: when any host fails, each problem is printed with its host and the run stops before
its first change, on every host.

A check can be skipped, for users who know better, with the data key ``preflight_skip`` (a list,
or a comma-separated string on the command line: ``--data preflight_skip=kernel,cgroup``).
"""

from __future__ import annotations

import functools
import re
import weakref

import gevent
from gevent.lock import Semaphore
from pyinfra import logger
from pyinfra.api.exceptions import DeployError, PyinfraError

from deploys.support import data
from facts.cluster_phase import ClusterState, InstalledRelease
from facts.preflight import NodePreflight
from operations.cluster_phase import remember_cluster_state

# Every check a node can fail, by the name used to skip it.
NODE_CHECKS = ("sudo", "systemd", "kernel", "cgroup", "api_name", "api_port")

_lock = Semaphore()
# One verdict per pyinfra State: {host name: [problems]}.
_verdicts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def kernel_version(release: str) -> tuple[int, ...]:
    """``5.15.0-83-generic`` -> ``(5, 15, 0)``."""
    match = re.match(r"(\d+(?:\.\d+)*)", release)
    return tuple(int(part) for part in match.group(1).split(".")) if match else ()


def skipped_checks(data) -> set[str]:
    skip = data.get("preflight_skip") or ()
    if isinstance(skip, str):
        skip = skip.split(",")
    names = {name.strip() for name in skip if name.strip()}
    unknown = names - set(NODE_CHECKS)
    if unknown:
        raise DeployError(
            f"preflight_skip names unknown checks {sorted(unknown)}: use some of {', '.join(NODE_CHECKS)}"
        )
    return names


def node_problems(state: dict, *, min_kernel: str, service_host: str, service_port: int,
                  cgroup_root: str, user: str, skip=frozenset()) -> list[str]:
    """What keeps a node from being migrated, each with what to do about it."""
    if not state["kernel"]:
        # The command did not run at all: pyinfra has printed why just above.
        return [
            "the preflight command could not run: check SSH and that "
            f"{user or 'the SSH user'} can use sudo without a password"
        ]

    checks = {
        "sudo": (
            state["root"],
            f"commands did not run as root: give {user or 'the SSH user'} sudo, and keep _sudo=True",
        ),
        "systemd": (state["systemd"], "systemd is not running as PID 1: the migration acts on systemd units"),
        "kernel": (
            kernel_version(state["kernel"]) >= kernel_version(min_kernel),
            f"kernel {state['kernel']} is older than {min_kernel}, the oldest the pinned Cilium "
            "supports: upgrade the node's kernel",
        ),
        "cgroup": (
            state["cgroup_fs"] == "cgroup2fs",
            f"no cgroup v2 mounted at {cgroup_root} (found {state['cgroup_fs'] or 'nothing'}): boot the "
            "node with cgroup v2 or set cilium_values cgroup.hostRoot to where it is mounted",
        ),
        "api_name": (
            state["resolves"],
            f"{service_host!r} does not resolve on the node: add it to the node's /etc/hosts or DNS "
            "(without kube-proxy, Cilium's agents find the API server only by this name)",
        ),
        "api_port": (
            state["reachable"] or not state["resolves"],
            f"{service_host}:{service_port} does not answer from the node: check the load balancer "
            "and the node's firewall",
        ),
    }
    return [message for name, (ok, message) in checks.items() if not ok and name not in skip]


def _check_node(host, checks=NODE_CHECKS) -> list[str]:
    values = data.value(host, "cilium_values")
    service_host, service_port = values["k8sServiceHost"], values["k8sServicePort"]
    cgroup_root = values.get("cgroup", {}).get("hostRoot", "/sys/fs/cgroup")
    state = host.get_fact(
        NodePreflight,
        service_host=service_host,
        service_port=service_port,
        cgroup_root=cgroup_root,
    )
    return node_problems(
        state,
        min_kernel=str(data.value(host, "cilium_min_kernel")),
        service_host=service_host,
        service_port=service_port,
        cgroup_root=cgroup_root,
        user=host.data.get("ssh_user"),
        skip=skipped_checks(host.data) | (set(NODE_CHECKS) - set(checks)),
    )


def _cluster_facts_readable(host, read) -> list[str]:
    try:
        read()
    except PyinfraError:
        # pyinfra gives up when the last active host fails; the verdict below says why.
        pass
    if host in host.state.failed_hosts:
        return ["the cluster checks failed (the line above says why): fix it before going on"]
    return []


def _check_local(host) -> list[str]:
    """helm, the kubeconfig, the API server, the chart, its version and the values.

    The cluster facts only read; each exits non-zero with one line (which pyinfra prints) when
    it cannot. Asked here, they stop the run before the nodes change even with ``-y``, which
    skips change detection and so would first read them after the node steps had run.
    """
    args = dict(data.release(host), pod_cidrs=[])

    def read():
        snapshot = host.get_fact(ClusterState, **args)
        if snapshot:
            remember_cluster_state(host.state, host.name, args, snapshot)

    return _cluster_facts_readable(host, read)


def _check_local_for_rollback(host) -> list[str]:
    """helm, the kubeconfig and the API server: what reading and removing the release needs."""
    args = dict(release=data.value(host, "cilium_release"), **data.cluster(host))
    return _cluster_facts_readable(host, lambda: host.get_fact(InstalledRelease, **args))


def _check_inventory(state, check_node, check_local) -> dict[str, list[str]]:
    hosts = state.inventory.get_active_hosts()
    # Every host at once; a greenlet group of its own, so that pyinfra's pool, busy loading the
    # deploy file for each host, cannot starve it.
    jobs = {
        host.name: gevent.spawn(check_local if "local" in host.groups else check_node, host)
        for host in hosts
    }
    gevent.joinall(list(jobs.values()))
    verdict = {}
    for name, job in jobs.items():
        if not job.successful():
            raise job.exception
        if job.value:
            verdict[name] = job.value
    return verdict


def require(state, rollback: bool = False) -> None:
    """Stop the run, before any change, unless every host passes its checks.

    The rollback needs less: sudo and systemd on the nodes; helm, the kubeconfig and the API
    server on ``local``.
    """
    if rollback:
        checks = (functools.partial(_check_node, checks=("sudo", "systemd")), _check_local_for_rollback)
    else:
        checks = (_check_node, _check_local)
    with _lock:
        if state not in _verdicts:
            _verdicts[state] = _check_inventory(state, *checks)
            for name, problems in sorted(_verdicts[state].items()):
                for problem in problems:
                    logger.error(f"[{name}] preflight: {problem}")
    failed = _verdicts[state]
    if failed:
        raise DeployError(
            f"preflight failed on {', '.join(sorted(failed))}; nothing was changed on any host. "
            "Fix what is listed above (a node check can be skipped with --data preflight_skip=NAME)."
        )

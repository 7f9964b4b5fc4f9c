"""
Preflight: every host is checked before the deploy changes any of them.

First the data (one line a problem, naming the key), then every host at once: nodes are asked
for what :class:`NodePreflight` reads, the ``local`` host (the workstation) for helm, the
kubeconfig, the API server, the chart and the values, through the cluster facts. A host of the
inventory that pyinfra could not connect to is a failure too: a run without it would migrate
the others and leave the cluster half on the old network. Last, each node's lock is taken, so
that two runs never change one node at once (:mod:`deploys.support.lock`).

The deploy file calls :func:`require` for each host while pyinfra prepares the run (so ``--dry``
runs it too). The first call checks the whole inventory at once and every later call reuses the
verdict: when any host fails, each problem is printed with its host and the run stops before
its first change, on every host.

A node check can be skipped, for users who know better, with the data key ``preflight_skip`` (a
list, or a comma-separated string on the command line: ``--data preflight_skip=kernel,cgroup``).
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import re
import shutil
import subprocess
import weakref

import gevent
from gevent.lock import Semaphore
from pyinfra import logger
from pyinfra.api.exceptions import DeployError, PyinfraError

from deploys.support import data, lock, rollback_records
from facts.cluster_phase import ClusterState, InstalledRelease
from facts.preflight import NodePreflight
from operations.cluster_phase import remember_cluster_state

# Every check a node can fail, by the name used to skip it.
NODE_CHECKS = ("sudo", "systemd", "kernel", "cgroup", "api_name", "api_port", "cni_dir", "room")
# The node's directories: kubelet's CNI directory, then where the migration keeps what it moves.
DIR_KEYS = ("cni_conf_dir", "cni_backup_dir", "modules_backup_dir", "units_record_dir")
# What the backups need beside a copy of the CNI directory: records and small persistence files.
SPARE_KIB = 64

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


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def values_problems(values) -> list[str]:
    """What is wrong with ``cilium_values`` for the migration, each with what to do."""
    if not isinstance(values, dict):
        return [
            f"cilium_values is a {type(values).__name__}, not a mapping of the chart's values: "
            "give it as a dict in group data"
        ]
    problems = []
    service_host, port = values.get("k8sServiceHost"), values.get("k8sServicePort")
    if not service_host or not isinstance(service_host, str):
        problems.append(
            "cilium_values has no k8sServiceHost: set it to the name or address every node "
            "reaches the API server by (the guide's: kubernetes)"
        )
    elif service_host == "auto":
        # Cilium reads the address from kube-public/cluster-info: the workstation checks it is there.
        return problems
    elif _is_loopback(service_host):
        problems.append(
            f"cilium_values k8sServiceHost {service_host!r} is a loopback address: each "
            "agent would talk to itself; use the name or address the nodes reach the API "
            "server by (the guide's: kubernetes)"
        )
    if isinstance(port, bool) or not str(port).isdigit() or not 0 < int(port) < 65536:
        problems.append(
            f"cilium_values k8sServicePort {port!r} is not a port number: set it to the API "
            "server's port (the guide's: 6443)"
        )
    return problems


def directory_problems(dirs: dict[str, str]) -> list[str]:
    """The node's directories: absolute, distinct, and no backup inside the CNI directory."""
    problems = [
        f"{key} {path!r} is not an absolute path: give the full path on the node"
        for key, path in dirs.items()
        if not isinstance(path, str) or not posixpath.isabs(path)
    ]
    if problems:
        return problems
    norm = {key: posixpath.normpath(path) for key, path in dirs.items()}
    conf = norm.get("cni_conf_dir")
    for i, (key, path) in enumerate(norm.items()):
        for other, other_path in list(norm.items())[:i]:
            if path == other_path:
                problems.append(f"{key} and {other} are both {path}: give each its own directory")
        if key != "cni_conf_dir" and conf and (path + "/").startswith(conf + "/") and path != conf:
            problems.append(
                f"{key} {path} is inside cni_conf_dir {conf}, where kubelet reads every file: "
                "put it outside"
            )
    return problems


def node_data_problems(host) -> list[str]:
    """The node's own data: values, pod CIDR, directories, skipped checks."""
    problems = values_problems(data.value(host, "cilium_values"))
    if host.data.get("pod_cidr"):
        try:
            data.pod_route(host)
        except ValueError as error:
            problems.append(str(error))
    problems += directory_problems({key: data.value(host, key) for key in DIR_KEYS})
    skipped_checks(host.data)
    return problems


def node_problems(
    state: dict,
    *,
    min_kernel: str,
    service_host: str,
    service_port: int,
    cgroup_root: str,
    user: str,
    conf_dir: str = "",
    backup_dirs=(),
    password_given: bool = False,
    skip=frozenset(),
) -> list[str]:
    """What keeps a node from being migrated, each with what to do about it."""
    if not state["kernel"]:
        # The command did not run at all: pyinfra has printed why just above.
        return [
            "the preflight command could not run (pyinfra says why above): check SSH to the node"
        ]

    who = user or "the SSH user"
    loopback = [a for a in state.get("addresses", []) if _is_loopback(a)]
    need = state.get("conf_kib", 0) + SPARE_KIB
    checks = [
        (
            "sudo",
            state["root"] or state.get("sudo") or password_given,
            f"sudo asks {who} for a password: allow {who} sudo without one (NOPASSWD), or give it with "
            "--use-sudo-password or the _sudo_password data key",
        ),
        (
            "systemd",
            state["systemd"],
            "systemd is not running as PID 1: the migration acts on systemd units",
        ),
        (
            "kernel",
            kernel_version(state["kernel"]) >= kernel_version(min_kernel),
            f"kernel {state['kernel']} is older than {min_kernel}, the oldest the pinned Cilium supports: "
            "upgrade the node's kernel",
        ),
        (
            "cgroup",
            state["cgroup_fs"] == "cgroup2fs",
            f"no cgroup v2 mounted at {cgroup_root} (found {state['cgroup_fs'] or 'nothing'}): boot the node "
            "with cgroup v2 or set cilium_values cgroup.hostRoot to where it is mounted",
        ),
        (
            "api_name",
            state["resolves"],
            f"{service_host!r} does not resolve on the node: add it to the node's /etc/hosts or DNS "
            "(without kube-proxy, Cilium's agents find the API server only by this name)",
        ),
        (
            "api_name",
            not loopback,
            f"{service_host!r} resolves to {', '.join(loopback)} on the node, a loopback address: each agent "
            "would talk to itself; make it resolve to the API server's address, or set k8sServiceHost to it",
        ),
        # Unresolved or on loopback, the line above names the cause.
        (
            "api_port",
            state["reachable"] or not state["resolves"] or loopback,
            f"{service_host}:{service_port} does not answer from the node: check the load balancer and the "
            "node's firewall",
        ),
        (
            "cni_dir",
            not conf_dir or state.get("conf_dir", True),
            f"cni_conf_dir {conf_dir} does not exist on the node: set it to the directory kubelet reads "
            "CNI configurations from",
        ),
    ]
    # Backup directories usually share one file system: one line for all that share a problem.
    read_only = [
        path
        for path, room in zip(backup_dirs, state.get("room", []), strict=False)
        if room["read_only"]
    ]
    checks.append(
        (
            "room",
            not read_only,
            f"{', '.join(read_only)} {'is' if len(read_only) == 1 else 'are'} on a "
            "read-only file system: choose a writable place",
        )
    )
    short: dict[int, list[str]] = {}
    for path, room in zip(backup_dirs, state.get("room", []), strict=False):
        if not room["read_only"] and room["free_kib"] is not None and room["free_kib"] < need:
            short.setdefault(room["free_kib"], []).append(path)
    for free, paths in short.items():
        checks.append(
            (
                "room",
                False,
                f"{', '.join(paths)}: {free} KiB free, and the backups need {need} KiB: "
                "make room, or choose another place",
            )
        )
    return [message for name, ok, message in checks if not ok and name not in skip]


def _password_given(host) -> bool:
    config = host.state.config
    return bool(
        host.data.get("_sudo_password")
        or getattr(config, "SUDO_PASSWORD", None)
        or getattr(config, "USE_SUDO_PASSWORD", False)
    )


def _check_node(host, checks=NODE_CHECKS) -> list[str]:
    problems = node_data_problems(host)
    if problems:
        return problems
    values = data.value(host, "cilium_values")
    service_host = values["k8sServiceHost"]
    service_port = 0 if service_host == "auto" else int(values["k8sServicePort"])
    cgroup_root = values.get("cgroup", {}).get("hostRoot", "/sys/fs/cgroup")
    conf_dir = data.value(host, "cni_conf_dir")
    backup_dirs = [data.value(host, key) for key in DIR_KEYS[1:]]
    state = host.get_fact(
        NodePreflight,
        service_host=service_host,
        service_port=service_port,
        cgroup_root=cgroup_root,
        conf_dir=conf_dir,
        backup_dirs=backup_dirs,
        # As the SSH user: a sudo that wants a password is reported, not prompted for.
        _sudo=False,
    )
    return node_problems(
        state,
        min_kernel=str(data.value(host, "cilium_min_kernel")),
        service_host=service_host,
        service_port=service_port,
        cgroup_root=cgroup_root,
        user=host.data.get("ssh_user"),
        conf_dir=conf_dir,
        backup_dirs=backup_dirs,
        password_given=_password_given(host),
        skip=skipped_checks(host.data)
        | (set(NODE_CHECKS) - set(checks))
        # With "auto" there is no name to resolve on the nodes (the workstation checks cluster-info).
        | ({"api_name", "api_port"} if service_host == "auto" else set()),
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


def _workstation_sudo(host) -> list[str]:
    """The routes to the pod CIDRs change through sudo on this machine: it must not prompt."""
    if (
        not data.value(host, "host_routes_sudo")
        or os.geteuid() == 0
        or not data.pod_routes(host.state.inventory)
    ):
        return []
    if not shutil.which("sudo"):
        return [
            "host_routes_sudo is set and sudo is not installed on this machine: install it, or run "
            "pyinfra as root with --data host_routes_sudo=False"
        ]
    if subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        return []
    return [
        "host_routes_sudo is set and sudo asks for a password on this machine: allow it without one, "
        "or run pyinfra as root with --data host_routes_sudo=False"
    ]


def _check_local(host) -> list[str]:
    """The values, sudo for the routes, then helm, the kubeconfig, the API server, the chart, its
    version and the values, through the cluster facts.

    The cluster facts only read; each exits non-zero with one line (which pyinfra prints) when
    it cannot. Asked here, they stop the run before the nodes change even with ``-y``, which
    skips change detection and so would first read them after the node steps had run.
    """
    problems = values_problems(data.value(host, "cilium_values")) + _workstation_sudo(host)
    if problems:
        return problems
    args = dict(data.release(host), pod_cidrs=[])

    def read():
        snapshot = host.get_fact(ClusterState, **args)
        if snapshot:
            remember_cluster_state(host.state, host.name, args, snapshot)

    return _cluster_facts_readable(host, read)


def _check_local_for_rollback(host) -> list[str]:
    """helm, the kubeconfig and the API server: what reading and removing the release needs."""
    problems = _workstation_sudo(host)
    if problems:
        return problems
    args = dict(release=data.value(host, "cilium_release"), **data.cluster(host))
    return _cluster_facts_readable(host, lambda: host.get_fact(InstalledRelease, **args))


def _one_line(check, host) -> list[str]:
    """A check's problems; an error inside it becomes one of them, never a traceback."""
    try:
        return check(host)
    except DeployError as error:
        return [str(error).removeprefix(f"[{host.name}] ")]
    except Exception as error:  # a bug of ours or a surprise from a node: still one line
        return [f"the check failed: {type(error).__name__}: {error}"]


def _unreachable(state) -> dict[str, list[str]]:
    verdict = {}
    for host in state.inventory:
        if not state.is_host_in_limit(host) or host in state.activated_hosts:
            continue
        # Without group data pyinfra logs in as root, and says only that authentication failed.
        hint = (
            "; it has no group data either: keep the inventory in inventories/, or point at the "
            "project's with --group-data inventories/group_data"
            if host.data.get("cilium_values") is None
            else ""
        )
        verdict[host.name] = [
            f"pyinfra could not connect to it (it says why above): bring it back, or leave it "
            f"out of this run with --exclude {host.name}{hint}"
        ]
    return verdict


def _in_parallel(hosts, job) -> dict[str, list[str]]:
    # A greenlet group of its own, so that pyinfra's pool, busy loading the deploy file for each
    # host, cannot starve it.
    jobs = {host.name: gevent.spawn(_one_line, job, host) for host in hosts}
    gevent.joinall(list(jobs.values()))
    return {name: job.value for name, job in jobs.items() if job.value}


def _take_locks(state) -> dict[str, list[str]]:
    """Every node's lock: the first node's (by name) alone, then the others side by side. Of two
    runs started together, the one that takes the first node's goes on, and the other stops
    there, holding none; the rest cost one round trip, however many nodes."""
    me = lock.holder()

    def take(host):
        refused = lock.take(host, data.value(host, "node_lock_file"), me)
        return [refused] if refused else []

    nodes = sorted(
        (h for h in state.inventory.get_active_hosts() if "local" not in h.groups),
        key=lambda h: h.name,
    )
    first = _in_parallel(nodes[:1], take)
    return first or _in_parallel(nodes[1:], take)


def _verdict(state, check_node, check_local) -> dict[str, list[str]]:
    # The locks are taken while the checks run (the workstation's cluster read is the longest):
    # a run the checks refuse ends at once, and its locks with it.
    locks = gevent.spawn(_take_locks, state)
    verdict = _unreachable(state)
    verdict.update(
        _in_parallel(
            state.inventory.get_active_hosts(),
            lambda host: (check_local if "local" in host.groups else check_node)(host),
        )
    )
    locks.join()
    return verdict or locks.value


def require(state, rollback: bool = False) -> None:
    """Stop the run, before any change, unless every host passes its checks.

    The rollback needs less: sudo and systemd on the nodes, and the migration's record there;
    helm, the kubeconfig and the API server on ``local``.
    """
    if rollback:
        checks = (
            lambda host: (
                _check_node(host, checks=("sudo", "systemd"))
                or rollback_records.missing_record(host)
            ),
            _check_local_for_rollback,
        )
    else:
        checks = (_check_node, _check_local)
    with _lock:
        if state not in _verdicts:
            _verdicts[state] = _verdict(state, *checks)
            for name, problems in sorted(_verdicts[state].items()):
                for problem in problems:
                    logger.error(f"[{name}] preflight: {problem}")
    failed = _verdicts[state]
    if failed:
        raise DeployError(
            f"preflight failed on {', '.join(sorted(failed))}; nothing was changed on any host. "
            "Fix what is listed above (a node check can be skipped with --data preflight_skip=NAME)."
        )

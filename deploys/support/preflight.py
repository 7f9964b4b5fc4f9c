"""
Preflight: every host is checked before the deploy changes any of them.

First the data (one line a problem, naming the key), then every host at once: nodes are asked
for what :class:`NodePreflight` reads, the ``local`` host (the workstation) for helm, the
kubeconfig, the API server, the chart and the values, through the cluster facts. A host of the
inventory that pyinfra could not connect to is a failure too: a run without it would migrate
the others and leave the cluster half on the old network. Meanwhile each node's lock is taken,
so that two runs never change one node at once (:mod:`deploys.support.lock`).

The deploy file calls :func:`require` for each host while pyinfra prepares the run (so ``--dry``
runs it too). The first call checks the whole inventory at once and every later call reuses the
verdict: when any host fails, each problem is printed with its host and the run stops before
its first change, on every host. A node that passes its checks is read as soon as its lock is
held (:meth:`deploys.support.run.Run.node_read`), while the cluster read still runs; a read
that fails is one more problem.

A node check can be skipped, for users who know better, with the data key ``preflight_skip`` (a
list, or a comma-separated string on the command line: ``--data preflight_skip=kernel,cgroup``).
"""

from __future__ import annotations

import contextlib

import gevent
from pyinfra import logger
from pyinfra.api.exceptions import DeployError, PyinfraError

from deploys.support import data, lock, rollback_records, workstation
from deploys.support.node_verdict import NODE_CHECKS, node_problems
from facts.cluster_phase import InstalledRelease
from facts.preflight import NodePreflight


def _password_given(host) -> bool:
    config = host.state.config
    return bool(
        host.data.get("_sudo_password")
        or getattr(config, "SUDO_PASSWORD", None)
        or getattr(config, "USE_SUDO_PASSWORD", False)
    )


def _check_node(host, checks=NODE_CHECKS) -> list[str]:
    problems = data.node_data_problems(host)
    if problems:
        return problems
    values = data.cilium_values(host)
    service_host = values["k8sServiceHost"]
    service_port = 0 if service_host == "auto" else int(values["k8sServicePort"])
    cgroup_root = values.get("cgroup", {}).get("hostRoot", "/sys/fs/cgroup")
    conf_dir = data.value(host, "cni_conf_dir")
    backup_dirs = [data.value(host, key) for key in data.DIR_KEYS[1:]]
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
        skip=data.skipped_checks(host.data)
        | (set(NODE_CHECKS) - set(checks))
        # With "auto" there is no name to resolve on the nodes (the workstation checks cluster-info).
        | ({"api_name", "api_port"} if service_host == "auto" else set()),
    )


def _readable(host, read, what: str) -> list[str]:
    try:
        read()
    except PyinfraError:
        # pyinfra gives up when the last active host fails; the verdict below says why.
        pass
    if host in host.state.failed_hosts:
        return [f"{what} failed (the line above says why): fix it before going on"]
    return []


def _cluster_facts_readable(host, read) -> list[str]:
    return _readable(host, read, "the cluster checks")


def _check_local(host, run) -> list[str]:
    """The values, sudo for the routes, then helm, the kubeconfig, the API server, the chart, its
    version and the values, through the cluster facts.

    The cluster facts only read; each exits non-zero with one line (which pyinfra prints) when
    it cannot, or when the release may not be changed as declared (a pending release, a
    downgrade, a skip of minors, another chart, values set by hand, a missing namespace, keys
    the chart does not know). Asked here, they stop the run before the nodes change even with
    ``-y``, which skips change detection and so would first read them after the node steps had
    run.
    """
    problems = data.values_problems(data.cilium_values(host))
    problems += workstation.sudo_problems(host)
    if problems:
        return problems
    # The whole cluster in one command; the cluster operations use the answer (run.py).
    return _cluster_facts_readable(host, lambda: run.cluster_read(host).read(host))


def _check_local_for_rollback(host, run) -> list[str]:
    """helm, the kubeconfig and the API server: what reading and removing the release needs."""
    problems = workstation.sudo_problems(host)
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


def _take_locks(run) -> dict[str, gevent.Greenlet]:
    """Every node's lock, one job per node, whose value is ``[]`` once taken, else why not: the
    first node's (by name) alone, then the others side by side. Of two runs started together,
    the one that takes the first node's goes on, and the other stops there, holding none; the
    rest cost one round trip, however many nodes."""
    me = lock.holder()

    def take(host):
        refused = run.locks.take(host, data.value(host, "node_lock_file"), me)
        return [refused] if refused else []

    def take_after_first(host):
        if first.get() != []:
            return None  # the first node's lock was refused: no other is taken (None: not tried)
        return take(host)

    nodes = sorted(
        (h for h in run.state.inventory.get_active_hosts() if "local" not in h.groups),
        key=lambda h: h.name,
    )
    if not nodes:
        return {}
    first = gevent.spawn(_one_line, take, nodes[0])
    return {
        nodes[0].name: first,
        **{host.name: gevent.spawn(_one_line, take_after_first, host) for host in nodes[1:]},
    }


@contextlib.contextmanager
def _failures_left_to_the_verdict(state):
    """Without -y, pyinfra asks "One of more hosts failed, continue?" the moment a fact fails on
    one host while others are left (its FAIL_PERCENT of 0 and a prompt, pyinfra_cli); with no
    terminal that ends in EOFError. A failed check is the verdict's to report, as with -y."""
    fail_percent = state.config.FAIL_PERCENT
    state.config.FAIL_PERCENT = None
    try:
        yield
    finally:
        state.config.FAIL_PERCENT = fail_percent


def _verdict(run, check_node, check_local, node_facts=None) -> dict[str, list[str]]:
    with _failures_left_to_the_verdict(run.state):
        return _checked(run, check_node, check_local, node_facts)


def _checked(run, check_node, check_local, node_facts) -> dict[str, list[str]]:
    # The locks are taken while the checks run (the workstation's cluster read is the longest):
    # a run the checks refuse ends at once, and its locks with it. Each node that passes its
    # own checks is read as soon as its lock is held, beside the cluster read.
    locks = _take_locks(run)

    def node(host):
        problems = check_node(host)
        if problems or node_facts is None or locks[host.name].get() != []:
            return problems  # a refused lock is the lock job's to report
        return _readable(
            host, lambda: run.node_read(host, node_facts(host)), "reading the node's state"
        )

    verdict = _unreachable(run.state)
    verdict.update(
        _in_parallel(
            run.state.inventory.get_active_hosts(),
            lambda host: check_local(host, run) if "local" in host.groups else node(host),
        )
    )
    gevent.joinall(list(locks.values()))
    refused = {name: job.value for name, job in locks.items() if job.value}
    return verdict or refused


def require(run, rollback: bool = False, node_facts=None) -> None:
    """Stop the run, before any change, unless every host passes its checks.

    ``run`` is the deploy's :class:`deploys.support.run.Run`: the first call computes its verdict
    for every host (and takes the locks, reads the cluster into its cluster read, and each node,
    once its lock is held, into its node read of ``node_facts(host)``); later calls reuse it. A
    node whose read fails fails the verdict: a node the operations could not read would stop
    the run half-way. The rollback needs less: sudo and systemd on the nodes, and the
    migration's record there; helm, the kubeconfig and the API server on ``local``.
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
    with run.checking:
        if run.verdict is None:
            run.verdict = _verdict(run, *checks, node_facts=node_facts)
            for name, problems in sorted(run.verdict.items()):
                for problem in problems:
                    logger.error(f"[{name}] preflight: {problem}")
    failed = run.verdict
    if failed:
        raise DeployError(
            f"preflight failed on {', '.join(sorted(failed))}; nothing was changed on any host. "
            "Fix what is listed above (a node check can be skipped with --data preflight_skip=NAME)."
        )

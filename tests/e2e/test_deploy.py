"""
The deploy on the simulated lab, as a user runs it: pyinfra's CLI over SSH.

The scenarios build on each other in one sim (it boots once a session, with its control plane),
in this order: a dry run, the first run, a second run, drift on one node, a node down,
interrupted runs. Every expectation is read from inside the nodes, or from the API server, and
compared with what pyinfra reported. The sim's kubelets are kwok (the stand-in: no real kubelet
or Cilium image runs here).
"""

from __future__ import annotations

import ipaddress
import json
import posixpath
import re
import runpy
import subprocess

import pytest
from e2e_sim import CNI_BACKUP, CNI_DIR, CNI_SUFFIXES, GROUP_DATA, MODULES_BACKUP

from operations.cni import RESTART_PENDING

pytestmark = pytest.mark.e2e

KUBE_PROXY, KUBELET, CONTAINERD = "kube-proxy.service", "kubelet.service", "containerd.service"
# The deploy's operations, by the names it gives them, as pyinfra reports them.
OP_KUBE_PROXY = "Stop and disable kube-proxy"
OP_CNI = "Remove the old CNI configurations and restart kubelet"
OP_BR_NETFILTER = "Unload br_netfilter and stop loading it at boot"
OP_RELEASE = "Install Cilium with helm"
OP_RESTART = "Restart the pods started with the previous CNI"
MODULE_LINE = re.compile(r"^\s*br_netfilter\s*$")
# The workstation's operations (on @local).
CLUSTER_OPS = (
    "Add Cilium's helm repository",
    "Install Cilium with helm",
    "Wait until the cilium and cilium-operator pods are up",
    "Restart the pods started with the previous CNI",
    "Delete the host routes to the pod CIDRs",
)
# Where every host meets before the next part of the chapter (they change nothing).
PHASES = ("Every node is off kube-proxy and the old CNI", "Cilium runs on every node")


# Reading snapshots (see e2e_sim.Sim.snapshot).


def cni_configs(snap: dict) -> dict[str, str]:
    """CNI configurations in the CNI directory: name -> sha256."""
    return {
        posixpath.basename(path): entry["sha256"]
        for path, entry in snap["files"].items()
        if posixpath.dirname(path) == CNI_DIR
        and entry["type"] == "f"
        and path.endswith(CNI_SUFFIXES)
    }


def other_cni_dir_files(snap: dict) -> dict[str, dict]:
    return {
        path: entry
        for path, entry in snap["files"].items()
        if path.startswith(CNI_DIR + "/")
        and not (entry["type"] == "f" and path.endswith(CNI_SUFFIXES))
    }


def backups(snap: dict, directory: str) -> dict[str, set[str]]:
    """Backed-up files by original name (``x.conf`` and ``x.conf.~2~`` both count as ``x.conf``)."""
    found: dict[str, set[str]] = {}
    for path, entry in snap["files"].items():
        if posixpath.dirname(path) == directory and entry["type"] == "f":
            name = re.sub(r"\.~\d+~$", "", posixpath.basename(path))
            found.setdefault(name, set()).add(entry["sha256"])
    return found


def module_files(snap: dict) -> dict[str, str]:
    return {
        path: text
        for path, text in snap["texts"].items()
        if path == "/etc/modules"
        or (path.startswith("/etc/modules-load.d/") and path.endswith(".conf"))
    }


def without_module(text: str) -> list[str]:
    return [line for line in text.splitlines() if not MODULE_LINE.match(line)]


def unit(snap: dict, name: str) -> dict[str, str]:
    return snap["units"][name]


def convergence_problems(before: dict, after: dict) -> list[str]:
    """Everything that is not as the chapter leaves a node, given the node's state before the run."""
    problems = []
    kube_proxy = unit(after, KUBE_PROXY)
    if (
        kube_proxy["ActiveState"] not in ("inactive", "failed")
        or kube_proxy["UnitFileState"] != "disabled"
    ):
        problems.append(
            f"kube-proxy is {kube_proxy['ActiveState']} and {kube_proxy['UnitFileState']}"
        )
    for name in (KUBELET, CONTAINERD):
        if unit(after, name)["ActiveState"] != "active":
            problems.append(f"{name} is {unit(after, name)['ActiveState']}")
    if unit(after, CONTAINERD)["InvocationID"] != unit(before, CONTAINERD)["InvocationID"]:
        problems.append("containerd was restarted")
    moved = cni_configs(before)
    kubelet_restarted = (
        unit(after, KUBELET)["InvocationID"] != unit(before, KUBELET)["InvocationID"]
    )
    if moved and not kubelet_restarted:
        problems.append(f"kubelet was not restarted after {sorted(moved)} left {CNI_DIR}")
    if not moved and kubelet_restarted:
        problems.append("kubelet was restarted though no CNI configuration moved")
    if cni_configs(after):
        problems.append(f"CNI configurations left in {CNI_DIR}: {sorted(cni_configs(after))}")
    problems += lost_cni_files(before, after)
    if other_cni_dir_files(after) != other_cni_dir_files(before):
        problems.append(
            f"non-CNI files in {CNI_DIR} changed: {other_cni_dir_files(before)} -> {other_cni_dir_files(after)}"
        )
    for path, text in module_files(before).items():
        now = after["texts"].get(path)
        if now is None:
            problems.append(f"{path} was deleted")
        elif now.splitlines() != without_module(text):
            problems.append(
                f"{path} is {now!r}, expected {without_module(text)!r} (only br_netfilter lines removed)"
            )
    problems += lost_module_files(before, after)
    proxy_rules = [line for line in after["iptables"] if kube_proxy_chains(line)]
    if proxy_rules:
        problems.append(f"kube-proxy's iptables rules are left: {proxy_rules[:3]}...")
    kubelet_rules = [line for line in before["iptables"] if KUBELET_CHAIN.search(line)]
    if [line for line in after["iptables"] if KUBELET_CHAIN.search(line)] != kubelet_rules:
        problems.append("the kubelet's own KUBE-* chains changed (they must stay)")
    return problems


# What kubelet 1.34 itself writes (pkg/kubelet/kubelet_network_linux.go); every other KUBE-*
# chain is kube-proxy's.
KUBELET_CHAIN = re.compile(r"KUBE-(IPTABLES-HINT|FIREWALL|KUBELET-CANARY)\b")


def kube_proxy_chains(line: str) -> set[str]:
    return {
        name
        for name in re.findall(r"KUBE-[A-Z0-9-]+", line)
        if name not in ("KUBE-IPTABLES-HINT", "KUBE-FIREWALL", "KUBE-KUBELET-CANARY")
    }


def lost_cni_files(before: dict, after: dict) -> list[str]:
    """Each CNI configuration of ``before`` must be, byte for byte, in place or in the backup directory."""
    saved = backups(after, CNI_BACKUP)
    now = cni_configs(after)
    return [
        f"{name} lost: neither in {CNI_DIR} nor in {CNI_BACKUP} with its content"
        for name, digest in cni_configs(before).items()
        if now.get(name) != digest and digest not in saved.get(name, set())
    ]


def lost_module_files(before: dict, after: dict) -> list[str]:
    """A module file that changed must have its earlier content in the backup directory."""
    saved = backups(after, MODULES_BACKUP)
    problems = []
    for path, text in module_files(before).items():
        if after["texts"].get(path) == text:
            continue
        if before["files"][path]["sha256"] not in saved.get(posixpath.basename(path), set()):
            problems.append(f"{path} changed but its earlier content is not in {MODULES_BACKUP}")
    return problems


# Drift, made the way a user would make it.


def drift(sim, node: str) -> None:
    """kube-proxy back on, the bridge configuration restored from the backup, br_netfilter persisted again."""
    sim.sh(node, f"systemctl enable --now {KUBE_PROXY} 2>/dev/null")
    sim.sh(node, f"cp -p {CNI_BACKUP}/10-bridge.conf {CNI_DIR}/10-bridge.conf")
    sim.sh(node, "echo br_netfilter >> /etc/modules-load.d/cloud-init.conf")
    # kube-proxy's stand-in puts its chains back before idling: wait for them.
    sim.sh(
        node,
        "for i in $(seq 50); do iptables-save -t nat | grep -q KUBE-POSTROUTING && exit 0; sleep 0.1; done; exit 1",
    )


# The scenarios, each run once and then looked at by the tests below.


@pytest.fixture(scope="module")
def pristine(sim):
    return sim.pristine


@pytest.fixture(scope="module")
def dry(sim, pristine):
    run = sim.pyinfra("--dry")
    return run, sim.snapshot_all()


@pytest.fixture(scope="module")
def first(sim, dry):
    before = sim.snapshot_all()
    sim.pods_before = sim.pods()
    run = sim.pyinfra("-y")
    return before, run, sim.snapshot_all()


@pytest.fixture(scope="module")
def second(sim, first):
    revisions = sim.helm_revisions()
    run = sim.pyinfra("-y")
    return run, sim.snapshot_all(), revisions


@pytest.fixture(scope="module")
def drifted(sim, second):
    node = "worker1"
    drift(sim, node)
    before = sim.snapshot_all()
    dry_run = sim.pyinfra("--dry")
    after_dry = sim.snapshot_all()
    run = sim.pyinfra("-y")
    return node, before, dry_run, after_dry, run, sim.snapshot_all()


@pytest.fixture(scope="module")
def node_down(sim, drifted):
    down = "worker0"
    for node in sim.nodes:
        drift(sim, node)
    before = sim.snapshot_all()
    sim.cli("stop", down)
    refused = sim.pyinfra("-y", "--data", "cilium_wait_timeout=15")
    untouched = {node: sim.snapshot(node) for node in sim.nodes if node != down}
    # Told how to go on without it: the others migrate, and Cilium is installed for them.
    run = sim.pyinfra("-y", "--exclude", down, "--data", "cilium_wait_timeout=15")
    others = {node: sim.snapshot(node) for node in sim.nodes if node != down}
    health = json.loads(sim.verify("--no-wait", "--output", "json").stdout)
    agents = {node["node"] for node in health["nodes"] if not node["missing"]}
    sim.cli("start", down)
    restarted = sim.snapshot(down)
    # Back and Ready; its Cilium agent too, as its kubelet (kwok) brings it back.
    healthy = sim.verify("--timeout", "60")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    rerun = sim.pyinfra("-y")
    return (
        down,
        before,
        run,
        others,
        restarted,
        rerun,
        sim.snapshot_all(),
        refused,
        untouched,
        agents,
    )


@pytest.fixture(scope="module", params=[OP_KUBE_PROXY, OP_CNI, OP_BR_NETFILTER])
def interrupted(sim, node_down, request):
    for node in sim.nodes:
        drift(sim, node)
    before = sim.snapshot_all()
    run = sim.pyinfra_interrupted(f"--> Starting operation: {request.param}")
    mid = sim.snapshot_all()
    rerun = sim.pyinfra("-y")
    return request.param, before, run, mid, rerun, sim.snapshot_all()


# 3. A dry run changes nothing and announces exactly what the run does.


def test_dry_run_leaves_every_node_byte_identical(pristine, dry):
    run, after = dry
    assert run.returncode == 0, run.log
    for node, snap in pristine.items():
        assert after[node] == snap, f"--dry changed {node}"


def test_dry_run_lists_the_changes_the_run_makes(dry, first):
    dry_run, _ = dry
    _, run, _ = first
    assert dry_run.plan() == run.changed()
    assert all(hosts for op, hosts in dry_run.plan().items() if op not in PHASES)


# 1. The first run converges every node and says so.


def test_first_run_converges_every_node(sim, pristine, first):
    before, run, after = first
    assert run.returncode == 0, run.log
    assert before == pristine
    problems = {node: convergence_problems(before[node], after[node]) for node in sim.nodes}
    assert not any(problems.values()), problems


def test_first_run_reports_its_changes_on_every_node(sim, first):
    _, run, _ = first
    assert run.hosts_changed() == set(sim.nodes) | {"@local"}
    for op in (OP_KUBE_PROXY, OP_CNI, OP_BR_NETFILTER):
        assert run.changed()[op] == set(sim.nodes), op
    for op in CLUSTER_OPS:
        assert run.changed()[op] == {"@local"}, op
    assert run.report["results"]["totals"]["error"] == 0


def test_first_run_keeps_the_chapters_order_across_hosts(first):
    """helm installs Cilium only after every node is off its old CNI, and the old network's last
    pieces go only once Cilium is healthy, though the two are done by different hosts."""
    _, run, _ = first
    started = [
        line.split("Starting operation: ", 1)[1].strip()
        for line in run.log.splitlines()
        if "Starting operation: " in line
    ]
    assert (
        started.index(OP_CNI) < started.index(PHASES[0]) < started.index("Install Cilium with helm")
    )
    healthy = started.index("Wait until the cilium and cilium-operator pods are up")
    assert healthy < started.index(PHASES[1]) < started.index(OP_BR_NETFILTER)
    assert started.index(PHASES[1]) < started.index("Delete the host routes to the pod CIDRs")


def test_first_run_installs_cilium_from_the_real_chart_healthy_on_every_node(sim, first):
    assert sim.helm_revisions() == ["sh.helm.release.v1.cilium.v1"]
    verify = sim.verify("--no-wait", "-o", "json")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    report = json.loads(verify.stdout)
    assert report["agents_ready"] == report["nodes_ready"] == len(sim.nodes) == 6
    assert {(w["kind"], w["name"]) for w in report["workloads"]} == {
        ("DaemonSet", "cilium"),
        ("DaemonSet", "cilium-envoy"),
        ("Deployment", "cilium-operator"),
    }


def test_first_run_recreates_owned_old_cni_pods_and_lists_the_bare_one(sim, first):
    _, run, _ = first
    before, after = sim.pods_before, sim.pods()
    owned = {name for name in before if name.startswith(("kube-system/coredns-", "default/nginx-"))}
    assert len(owned) == 4
    # Deleted, and their controllers made new ones, with addresses from their nodes' pod CIDRs.
    assert not owned & set(after)
    new = {
        name: pod
        for name, pod in after.items()
        if name.startswith(("kube-system/coredns-", "default/nginx-"))
    }
    assert len(new) == 4
    for pod in new.values():
        assert ipaddress.ip_address(pod["ip"]) in ipaddress.ip_network(
            sim.cfg.pod_cidr(pod["node"])
        ), pod
    # The bare pod: nothing would recreate it, so it stays and the run says so.
    assert after["default/busybox"]["uid"] == before["default/busybox"]["uid"]
    assert "default/busybox" in run.log and "no controller recreates it" in run.log


def test_first_run_deletes_the_workstations_routes_to_the_pod_cidrs(sim, first):
    routes = subprocess.run(
        ["ip", "-4", "route", "show"], capture_output=True, text=True, check=True
    ).stdout
    for node in sim.nodes:
        assert f"{sim.cfg.pod_cidr(node)} via {sim.cfg.address(node)} " not in routes, node


def test_guide_files_are_kept_byte_for_byte(sim, pristine, first):
    """The sim's nodes start with the guide's two CNI files and br_netfilter persisted; all of it is backed up."""
    _, _, after = first
    for node in sim.nodes:
        assert set(cni_configs(pristine[node])) == {"10-bridge.conf", "99-loopback.conf"}
        assert any("br_netfilter" in text for text in module_files(pristine[node]).values())
        assert not lost_cni_files(pristine[node], after[node]), node
        assert not lost_module_files(pristine[node], after[node]), node


def test_other_files_and_module_lines_survive(sim, pristine, first):
    _, _, after = first
    varied = [node for node in sim.nodes if other_cni_dir_files(pristine[node])]
    with_overlay = [
        node
        for node in sim.nodes
        if any("overlay" in t for t in module_files(pristine[node]).values())
    ]
    # The sim's variants exist, or this test would prove nothing.
    assert varied and with_overlay
    for node in varied:
        assert other_cni_dir_files(after[node]) == other_cni_dir_files(pristine[node]), node
    for node in with_overlay:
        for path, text in module_files(pristine[node]).items():
            kept = [line for line in text.splitlines() if "overlay" in line or line.startswith("#")]
            assert all(line in after[node]["texts"][path].splitlines() for line in kept), (
                node,
                path,
            )


# 2. A second run changes nothing.


def test_second_run_reports_no_change_anywhere(sim, first, second):
    _, _, after_first = first
    run, after, revisions = second
    assert run.returncode == 0, run.log
    assert run.hosts_changed() == set()
    for op, hosts in run.unchanged().items():
        expected = (
            {"@local"}
            if op in CLUSTER_OPS
            else set(sim.nodes) | {"@local"}
            if op in PHASES
            else set(sim.nodes)
        )
        assert hosts == expected, op
    assert after == after_first
    assert sim.helm_revisions() == revisions == ["sh.helm.release.v1.cilium.v1"]


def evict_lines(log: str) -> set[str]:
    """The pods a run says it evicts (namespace/name), from the lines the operation logs."""
    return set(re.findall(r"evict pod (\S+) on ", log))


def test_dry_run_names_every_pod_the_run_restarts(sim, dry, first):
    """Read before the install, when no pod is Cilium's yet: exactly those the run evicts."""
    dry_run, _ = dry
    _, run, _ = first
    old_cni = {
        name
        for name, pod in sim.pods_before.items()
        if name.startswith(("kube-system/coredns-", "default/nginx-"))
    }
    assert evict_lines(dry_run.log) == old_cni == evict_lines(run.log), dry_run.log


# 2b. A values change after the migration: one upgrade, and no pod Cilium manages restarted.


@pytest.fixture(scope="module")
def values_changed(sim, second):
    values = runpy.run_path(str(GROUP_DATA / "all.py"))["cilium_values"]
    data = ("--data", f"cilium_values={json.dumps({**values, 'hubble': {'enabled': False}})}")
    before = (sim.pods(), sim.helm_revisions())
    dry_run = sim.pyinfra("--dry", *data)
    run = sim.pyinfra("-y", *data)
    after = (sim.pods(), sim.helm_revisions())
    # The group data's values again, for the scenarios after this one: one more upgrade.
    back = sim.pyinfra("-y")
    assert back.returncode == 0, back.log
    return dry_run, run, before, after


def on_pod_networks(pods: dict) -> dict[str, str]:
    """name -> uid of the pods with a pod network's address (not the agents' hostNetwork ones)."""
    return {name: pod["uid"] for name, pod in pods.items() if not pod["host_network"]}


def test_a_values_change_makes_exactly_one_new_revision(values_changed):
    _, run, (_, revisions), (_, revisions_after) = values_changed
    assert run.returncode == 0, run.log
    assert run.changed()[OP_RELEASE] == {"@local"}
    assert len(revisions_after) == len(revisions) + 1
    assert set(revisions) < set(revisions_after)


def test_a_values_change_restarts_no_pod_cilium_manages(values_changed):
    """CoreDNS's and the user's pods (recreated with Cilium's addresses by the first run) keep
    their uids; the bare pod the old CNI left is only named again."""
    _, run, (pods, _), (pods_after, _) = values_changed
    before, after = on_pod_networks(pods), on_pod_networks(pods_after)
    assert {n for n in before if n.startswith(("kube-system/coredns-", "default/nginx-"))}
    assert after == before
    assert run.unchanged()[OP_RESTART] == {"@local"}
    assert evict_lines(run.log) == set()


def test_dry_run_before_a_values_change_names_the_upgrade_and_no_pod(values_changed):
    dry_run, run, _, _ = values_changed
    assert dry_run.returncode == 0, dry_run.log
    assert dry_run.plan()[OP_RELEASE] == {"@local"}
    assert dry_run.plan()[OP_RESTART] == set()
    assert evict_lines(dry_run.log) == set()
    assert dry_run.plan() == run.changed()


# 4. Drift on one node: found by --dry on that node only, and fixed there only.


def test_drift_is_reported_for_that_node_only(sim, drifted):
    node, before, dry_run, after_dry, _, _ = drifted
    assert dry_run.returncode == 0, dry_run.log
    assert dry_run.hosts_planned() == {node}
    assert {op for op, hosts in dry_run.plan().items() if hosts} >= {
        OP_KUBE_PROXY,
        OP_CNI,
        OP_BR_NETFILTER,
    }
    assert after_dry == before


def test_drift_is_fixed_on_that_node_only(sim, drifted):
    node, before, dry_run, _, run, after = drifted
    assert run.returncode == 0, run.log
    assert run.hosts_changed() == {node}
    assert run.changed() == dry_run.plan()
    assert not convergence_problems(before[node], after[node])
    for other in sim.nodes:
        if other != node:
            assert after[other] == before[other], other
    # The restored file went to the backup again without replacing the first backup.
    names = [p for p in after[node]["files"] if p.startswith(f"{CNI_BACKUP}/10-bridge.conf")]
    assert len(names) == 2, names


# 5. A node down at the start: no node changes, and the run says how to go on without it. Left
#    out with --exclude, the others converge and Cilium is installed for them; once the node is
#    back, a re-run converges it.


def test_node_down_at_the_start_changes_no_node(node_down):
    down, before, _, _, _, _, _, refused, untouched, _ = node_down
    assert refused.returncode != 0
    lines = [line for line in refused.log.splitlines() if "preflight:" in line]
    assert len(lines) == 1 and f"[{down}]" in lines[0] and f"--exclude {down}" in lines[0], (
        refused.log
    )
    assert "nothing was changed on any host" in refused.log
    assert untouched == {node: before[node] for node in untouched}


def test_node_left_out_is_named_and_the_run_fails(node_down):
    """Its Node goes NotReady (its kubelet is gone with it): the wait for Cilium names it, and
    the run says where the migration stopped."""
    down, _, run, _, _, _, _, _, _, _ = node_down
    assert run.returncode != 0
    report = [line for line in run.log.splitlines() if re.search(rf"\]\s+{down}\s", line)]
    assert report and "node not Ready" in report[-1], run.log
    assert "the migration stopped half-way" in run.log


def test_node_down_the_others_leave_the_old_network_but_keep_br_netfilter(node_down):
    """The others lose kube-proxy and their old CNI; br_netfilter, which only goes once Cilium
    carries the traffic, stays while Cilium is not healthy."""
    down, before, run, others, _, _, _, _, _, _ = node_down
    problems = {
        node: [
            p for p in convergence_problems(before[node], snap) if not p.startswith("/etc/modules")
        ]
        for node, snap in others.items()
    }
    assert not any(problems.values()), problems
    for node, snap in others.items():
        assert module_files(snap) == module_files(before[node]), node
    assert run.hosts_changed() == set(others)
    assert OP_BR_NETFILTER not in run.changed() or not run.changed()[OP_BR_NETFILTER]


def test_node_left_out_the_others_get_cilium(node_down):
    """Installing for the nodes that did migrate beats withholding: without it they would have
    no network at all (their old CNI is gone), with it their pods are served (README)."""
    down, _, _, others, _, _, _, _, _, agents = node_down
    assert agents == set(others)


def test_node_down_converges_after_it_is_back(sim, node_down):
    down, before, _, _, restarted, rerun, final, _, _, _ = node_down
    # Down, it was left alone: its drift is still there after it booted again.
    assert restarted["files"] == before[down]["files"]
    assert unit(restarted, KUBE_PROXY)["UnitFileState"] == "enabled"
    assert rerun.returncode == 0, rerun.log
    # Its own drift, and br_netfilter on every node, now that Cilium runs everywhere.
    assert rerun.changed()[OP_KUBE_PROXY] == {down}
    assert rerun.changed()[OP_BR_NETFILTER] == set(sim.nodes)
    assert not convergence_problems(restarted, final[down])
    for node in sim.nodes:
        if node != down:
            assert not convergence_problems(before[node], final[node]), node


# 6. Ctrl-C in the middle of a run loses nothing, and a re-run converges.


def test_interrupted_run_loses_nothing(sim, interrupted):
    op, before, run, mid, _, _ = interrupted
    problems = {
        node: lost_cni_files(before[node], mid[node]) + lost_module_files(before[node], mid[node])
        for node in sim.nodes
    }
    assert not any(problems.values()), (op, problems)


def test_interrupted_run_stopped_before_its_end(interrupted):
    """Or the scenario would prove nothing. It exits 130 at the first Ctrl-C (pyinfra's own
    handler exits 0 and can hang: tests/upstream/), saying what it may have left."""
    op, _, run, _, _, _ = interrupted
    assert run.report is None and "--> Results:" not in run.log, (
        f"the run interrupted at {op!r} finished:\n{run.log}"
    )
    assert run.returncode == 130, run.log
    assert (
        "interrupted: hosts may be half-migrated; run the deploy again or deploys/rollback.py"
        in run.log
    )
    assert "(a second SIGINT was needed)" not in run.log


def test_rerun_after_interruption_converges(sim, interrupted):
    op, before, _, _, rerun, final = interrupted
    assert rerun.returncode == 0, rerun.log
    problems = {node: convergence_problems(before[node], final[node]) for node in sim.nodes}
    assert not any(problems.values()), (op, problems)


@pytest.fixture(scope="module")
def killed_after_move(sim, node_down):
    """A run killed between moving the CNI files and restarting kubelet, made deterministic by hand:
    the node is left as the operation's commands leave it up to the restart (marker, then moves)."""
    node = "control1"
    drift(sim, node)
    before = sim.snapshot(node)
    sim.sh(
        node,
        f"mkdir -p {CNI_BACKUP} && touch {CNI_BACKUP}/{RESTART_PENDING} && "
        f'for f in {CNI_DIR}/*.conf; do mv --backup=numbered "$f" {CNI_BACKUP}/; done',
    )
    rerun = sim.pyinfra("-y")
    marker_left = sim.sh(
        node, f"test -e {CNI_BACKUP}/{RESTART_PENDING} && echo yes || true"
    ).strip()
    return node, before, rerun, sim.snapshot(node), marker_left == "yes"


def test_rerun_restarts_kubelet_after_a_run_killed_before_the_restart(killed_after_move):
    node, before, rerun, after, marker_left = killed_after_move
    assert rerun.returncode == 0, rerun.log
    assert unit(after, KUBELET)["InvocationID"] != unit(before, KUBELET)["InvocationID"], (
        f"{node}: the CNI configurations left {CNI_DIR} but kubelet was never restarted"
    )
    assert not marker_left, f"{node}: the restart marker outlived the kubelet restart"

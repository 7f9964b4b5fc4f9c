"""``cilium-lab connectivity`` without a cluster: the plan of checks for N nodes, the pods' and
Services' bodies, what a pod's status JSON says (an image that cannot be pulled), the exec's
status, the routes it refuses to probe, the table and JSON, the exit codes, and the run's
cleanup on errors and signals (a fake API: its objects as JSON in)."""

from __future__ import annotations

import json
import runpy
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from cilium_lab.cli import cli
from cilium_lab.cluster import ClusterError
from cilium_lab.cluster import connectivity as conn
from cilium_lab.sim import inventory
from cilium_lab.sim.config import SimConfig

# Plan and nodes.


def node_json(name, ip="10.250.7.11", ready=True, os_label="linux", v6=None):
    addresses = [{"type": "Hostname", "address": name}]
    if v6:
        addresses.append({"type": "InternalIP", "address": v6})
    if ip:
        addresses.append({"type": "InternalIP", "address": ip})
    return {
        "metadata": {"name": name, "labels": {"kubernetes.io/os": os_label}},
        "status": {
            "addresses": addresses,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


@pytest.mark.parametrize("count", [1, 2, 3, 6])
def test_plan_covers_every_pair_and_one_of_each_other_check_per_node(count):
    nodes = [f"n{i}" for i in range(count)]
    checks = conn.plan(nodes)
    pairs = {(c.source, c.target) for c in checks if c.kind == "pod-to-pod"}
    assert pairs == {(a, b) for a in nodes for b in nodes}
    assert len(checks) == count * count + 5 * count
    for kind in ("pod-to-clusterip", "pod-to-dns", "pod-to-apiserver", "hostnet-to-clusterip"):
        assert [c.source for c in checks if c.kind == kind] == nodes
    assert [c.target for c in checks if c.kind == "nodeport"] == nodes
    assert {c.source for c in checks if c.kind == "nodeport"} == {conn.WORKSTATION}
    # The Services' backends are on another node wherever there is one.
    for c in checks:
        if c.kind in ("pod-to-clusterip", "pod-to-dns", "hostnet-to-clusterip"):
            assert (c.source != c.target) == (count > 1)
    # The table's order: the same-node rows first, then every kind in CHECKS' order.
    assert all(c.same_node for c in checks[:count])
    kinds = list(dict.fromkeys(c.kind for c in checks))
    assert kinds == list(conn.CHECKS)


def test_six_nodes_make_thirty_six_pairs_and_no_nodeport_when_asked():
    nodes = [f"worker{i}" for i in range(6)]
    checks = conn.plan(nodes, nodeport=False)
    assert sum(1 for c in checks if c.kind == "pod-to-pod") == 36
    assert not [c for c in checks if c.kind == "nodeport"]


def test_slugs_are_dns_labels_and_unique():
    names = conn.slugs(["Worker.Example.COM", "worker-example-com", "x" * 80, "..."])
    assert names["Worker.Example.COM"] == "worker-example-com"
    assert names["worker-example-com"] == "worker-example-com-1"
    assert names["x" * 80] == "x" * 40
    assert names["..."] == "node"
    assert len(set(names.values())) == 4


def test_select_nodes_skips_the_not_ready_and_refuses_none():
    nodes, skipped = conn.select_nodes(
        [
            node_json("control0", "10.0.0.11"),
            node_json("control1", "10.0.0.12", ready=False),
            node_json("win0", "10.0.0.13", os_label="windows"),
            node_json("dual", "10.0.0.14", v6="fd00::14"),
        ]
    )
    assert [(n.name, n.address) for n in nodes] == [
        ("control0", "10.0.0.11"),
        ("dual", "10.0.0.14"),
    ]
    assert skipped == [
        {"node": "control1", "reason": "not Ready"},
        {"node": "win0", "reason": "a windows node (agnhost runs on Linux here)"},
    ]
    with pytest.raises(ClusterError, match=r"no Ready node to check \(n0: not Ready\)"):
        conn.select_nodes([node_json("n0", ready=False)])
    with pytest.raises(ClusterError, match="the cluster has none"):
        conn.select_nodes([])


def test_select_nodes_named_ones_only_and_each_must_be_ready():
    items = [node_json("a"), node_json("b"), node_json("c", ready=False)]
    assert [n.name for n in conn.select_nodes(items, ("b",))[0]] == ["b"]
    with pytest.raises(ClusterError, match="no node named 'z'"):
        conn.select_nodes(items, ("z",))
    with pytest.raises(ClusterError, match="node c cannot be checked: not Ready"):
        conn.select_nodes(items, ("a", "c"))


# What is deployed.


def two_nodes():
    return conn.select_nodes([node_json("control0", "10.9.0.11"), node_json("w.1", "10.9.0.12")])[0]


def test_pods_are_pinned_tolerate_every_taint_and_run_agnhost():
    bodies = conn.pods(two_nodes(), "reg:5000/agnhost:1.34.4")
    assert [b["metadata"]["name"] for b in bodies] == [
        "server-control0",
        "client-control0",
        "host-control0",
        "server-w-1",
        "client-w-1",
        "host-w-1",
    ]
    for body in bodies:
        spec = body["spec"]
        assert spec["nodeName"] in ("control0", "w.1")
        assert spec["tolerations"] == [{"operator": "Exists"}]
        assert spec["restartPolicy"] == "Never"
        assert spec["containers"][0]["image"] == "reg:5000/agnhost:1.34.4"
    server, _, host = bodies[:3]
    assert server["spec"]["containers"][0]["args"] == [
        "netexec",
        "--http-port=8080",
        "--udp-port=-1",
    ]
    assert host["spec"]["hostNetwork"] is True
    assert host["spec"]["containers"][0]["args"] == ["pause"]


def test_services_select_one_nodes_server_each_and_the_nodeport_all():
    bodies = {b["metadata"]["name"]: b["spec"] for b in conn.services(two_nodes())}
    assert bodies["echo-w-1"]["selector"] == {conn.LABEL: "server", conn.NODE_LABEL: "w-1"}
    assert bodies["echo-nodeport"] == {
        "selector": {conn.LABEL: "server"},
        "ports": [{"name": "http", "port": 8080, "targetPort": 8080, "protocol": "TCP"}],
        "type": "NodePort",
    }
    ns = conn.namespace_body("x")["metadata"]["labels"]
    assert ns[conn.LABEL] == "true"
    assert ns["pod-security.kubernetes.io/enforce"] == "privileged"


def deployed(nodes=None):
    nodes = nodes or two_nodes()
    return conn.Deployed(
        "ns",
        {n.name: n for n in nodes},
        {"control0": "10.1.0.5", "w.1": "10.2.0.7"},
        {"control0": "10.32.0.100", "w.1": "10.32.0.101"},
        31234,
    )


def test_destinations_of_each_check():
    d = deployed()
    want = {
        ("pod-to-pod", "control0", "w.1"): ("client-control0", "10.2.0.7:8080"),
        ("pod-to-clusterip", "control0", "w.1"): ("client-control0", "10.32.0.101:8080"),
        ("pod-to-dns", "w.1", "control0"): (
            "client-w-1",
            "echo-control0.ns.svc.cluster.local:8080",
        ),
        ("pod-to-apiserver", "w.1", conn.API_TARGET): ("client-w-1", "kubernetes.default:443"),
        ("hostnet-to-clusterip", "w.1", "control0"): ("host-w-1", "10.32.0.100:8080"),
        ("nodeport", conn.WORKSTATION, "w.1"): (None, "10.9.0.12:31234"),
    }
    for (kind, source, target), (pod, destination) in want.items():
        check = conn.Check(kind, source, target)
        assert (d.pod(check), d.destination(check)) == (pod, destination)


# Pods starting.


def pod_json(
    name="server-w1", phase="Pending", waiting=None, message="", terminated=None, ready=False
):
    status = {"name": "agnhost", "image": "reg/agnhost:1", "state": {}}
    if waiting:
        status["state"] = {"waiting": {"reason": waiting, "message": message}}
    if terminated:
        status["state"] = {"terminated": terminated}
    pod = {
        "metadata": {"name": name},
        "spec": {"nodeName": "worker1", "containers": [{"name": "agnhost", "image": "reg/nope:1"}]},
        "status": {
            "phase": phase,
            "containerStatuses": [status],
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }
    if phase == "Running":
        pod["status"]["podIP"] = "10.5.0.3"
    return pod


@pytest.mark.parametrize("reason", conn.PULL_FAILURES)
def test_an_image_that_cannot_be_pulled_names_the_image_and_node(reason):
    failure = conn.pod_failure(
        pod_json(waiting=reason, message='failed to pull "reg/nope:1": not found')
    )
    assert failure.startswith(f"the image reg/nope:1 cannot be pulled on node worker1 ({reason}")
    assert "not found" in failure


def test_pods_still_starting_are_no_failure_and_say_what_they_wait_for():
    creating = pod_json(waiting="ContainerCreating")
    assert conn.pod_failure(creating) is None
    assert conn.pod_waiting(creating) == "ContainerCreating"
    assert conn.pod_waiting({"metadata": {"name": "x"}}) == "not yet seen"
    running = pod_json(phase="Running", ready=True)
    assert conn.pod_failure(running) is None
    assert conn.pod_waiting(running) is None
    assert conn.pod_waiting(pod_json(phase="Running", ready=False)) == "Running"


def test_a_container_that_exits_or_cannot_start_fails_at_once():
    exited = conn.pod_failure(
        pod_json(terminated={"exitCode": 128, "reason": "StartError", "message": "no /agnhost"})
    )
    assert "exited with code 128 (no /agnhost)" in exited and "is it agnhost" in exited
    crash = conn.pod_failure(pod_json(waiting="CreateContainerError", message="bad"))
    assert crash == (
        "pod server-w1 on node worker1 cannot start the image reg/nope:1 (CreateContainerError: bad)"
    )
    failed = pod_json()
    failed["status"] = {"phase": "Failed", "reason": "OutOfpods", "message": "no room"}
    assert conn.pod_failure(failed) == "pod server-w1 on node worker1 failed: no room"


def test_progress_names_what_it_waits_for():
    line = conn.pods_progress(
        {"server-a": "ContainerCreating", "client-b": "Pending"},
        6,
        {"server-a": "FailedCreatePodSandBox: plugin failed"},
    )
    assert line == (
        "4/6 pods running; waiting for client-b (Pending), "
        "server-a (ContainerCreating: FailedCreatePodSandBox: plugin failed)"
    )
    many = conn.pods_progress({f"p{i}": "Pending" for i in range(6)}, 6, {})
    assert many.endswith(", and 2 more")


def test_ready_endpoints_by_service():
    slices = [
        {
            "metadata": {"labels": {"kubernetes.io/service-name": "echo-a"}},
            "endpoints": [
                {"addresses": ["10.1.0.2"], "conditions": {"ready": True}},
                {"addresses": ["10.1.0.3"], "conditions": {"ready": False}},
            ],
        },
        {"metadata": {"labels": {"kubernetes.io/service-name": "echo-b"}}, "endpoints": None},
    ]
    assert conn.ready_endpoints(slices) == {"echo-a": {"10.1.0.2"}}


# The exec's status (the error channel).


def test_exec_status():
    assert conn.exec_status('{"metadata":{},"status":"Success"}') == (0, "")
    failure = {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: exit status 1",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "1"}]},
    }
    assert conn.exec_status(json.dumps(failure)) == (1, failure["message"])
    not_run = {"status": "Failure", "message": 'exec: "/agnhost": not found'}
    assert conn.exec_status(json.dumps(not_run)) == (None, 'exec: "/agnhost": not found')
    assert conn.exec_status("") == (None, "the exec ended without a status")


# Routes: the probes this machine refuses to send.


def test_parse_fibmatch():
    default = conn.parse_fibmatch(
        '[{"dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]}]'
    )
    assert default == conn.Route("default", "eth0", "192.0.2.1")
    assert default.is_default
    bridge = conn.parse_fibmatch(
        '[{"dst":"10.250.7.0/24","dev":"cilconn","protocol":"kernel","scope":"link",'
        '"prefsrc":"10.250.7.1","flags":[]}]'
    )
    assert bridge == conn.Route("10.250.7.0/24", "cilconn", None) and not bridge.is_default
    local = conn.parse_fibmatch('[{"type":"local","dst":"127.0.0.1","dev":"lo"}]')
    assert local.kind == "local"
    with pytest.raises(conn.RouteUnknown):
        conn.parse_fibmatch("[]")


def test_parse_bsd_route_get():
    macos_default = """   route to: 8.8.8.8
destination: default
       mask: default
    gateway: 192.168.0.1
  interface: en0
      flags: <UP,GATEWAY,DONE,STATIC,PRCLONING>
"""
    assert conn.parse_bsd_route_get(macos_default) == conn.Route("default", "en0", "192.168.0.1")
    macos_lab = """   route to: 192.168.1.14
destination: 192.168.1.0
       mask: 255.255.255.0
  interface: bridge100
"""
    assert conn.parse_bsd_route_get(macos_lab) == conn.Route("192.168.1.0/24", "bridge100", None)


def test_route_problem():
    on_bridge = conn.Route("10.250.7.0/24", "cilconn")
    default = conn.Route("default", "eth0", "192.0.2.1")
    assert conn.route_problem("w0", "10.250.7.11", on_bridge) is None
    assert conn.route_problem("w0", "10.250.7.11", on_bridge, device="cilconn") is None
    said = conn.route_problem("w0", "10.250.7.11", default)
    assert said.startswith("refusing to probe the NodePort on w0 (10.250.7.11): this machine")
    assert "default route (via 192.0.2.1 on eth0)" in said and "\n" not in said
    assert conn.route_problem("w0", "10.250.7.11", default, allow_default=True) is None
    # The lab names its interface: anything else is refused, the default route included.
    elsewhere = conn.route_problem("w0", "10.250.7.11", on_bridge, device="cilab0")
    assert "via cilconn (10.250.7.0/24), not cilab0" in elsewhere
    assert conn.route_problem("w0", "a", default, device="cilconn", allow_default=True)
    assert "unreachable" in conn.route_problem("w0", "a", conn.Route("x", kind="unreachable"))
    assert (
        conn.route_problem("w0", "127.0.0.1", conn.Route("127.0.0.1", "lo", kind="local")) is None
    )
    unknown = conn.route_problem("w0", "a", None, why_unknown="no ip")
    assert "cannot tell how this machine routes it (no ip); use --no-nodeport" in unknown


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="iproute2's fibmatch: Linux")
def test_lookup_route_asks_this_machines_kernel():
    """The kernel's own lookup (no packet sent): loopback is local; an address of TEST-NET-3
    goes where the default route goes, when this machine has one."""
    assert conn.lookup_route("127.0.0.1").kind == "local"
    has_default = (
        "default"
        in subprocess.run(
            ["ip", "-4", "route", "show", "default"], capture_output=True, text=True
        ).stdout
    )
    if has_default:
        route = conn.lookup_route("203.0.113.7")
        assert route.is_default
        node = conn.Node("far", "203.0.113.7", "far")
        assert conn.check_routes([node])[0].startswith("refusing to probe the NodePort on far")


def test_check_routes_collects_every_refusal():
    routes = {
        "10.0.0.1": conn.Route("default", "eth0", "gw"),
        "10.0.0.2": conn.Route("10.0.0.0/24", "br"),
    }

    def lookup(address):
        if address == "10.0.0.3":
            raise conn.RouteUnknown("boom")
        return routes[address]

    nodes = [conn.Node(f"n{i}", f"10.0.0.{i}", f"n{i}") for i in (1, 2, 3)]
    problems = conn.check_routes(nodes, lookup=lookup)
    assert len(problems) == 2
    assert "n1" in problems[0] and "(boom)" in problems[1]


# Running checks (fake exec and probe).


class FakeExec:
    def __init__(self, answers):
        self.answers = answers  # destination -> list of (code, said), one per attempt
        self.calls = []

    def run(self, pod, command, timeout):
        self.calls.append((pod, command))
        return self.answers[command[2]].pop(0)


def test_runner_retries_then_passes_and_times_the_attempt():
    fake = FakeExec({"10.2.0.7:8080": [(1, "OTHER: network is unreachable"), (0, "")]})
    runner = conn.Runner(deployed(), fake, timeout=2, attempts=3, pause=0)
    result = runner.run(conn.Check("pod-to-pod", "control0", "w.1"))
    assert (result.ok, result.attempts, result.error) == (True, 2, None)
    assert result.earlier_errors == ["OTHER: network is unreachable"]
    assert fake.calls[0] == (
        "client-control0",
        ["/agnhost", "connect", "10.2.0.7:8080", "--timeout=2s"],
    )
    assert isinstance(result.ms, int)


def test_runner_fails_after_its_attempts_with_the_last_error():
    fake = FakeExec({"10.32.0.101:8080": [(1, "TIMEOUT")] * 2})
    runner = conn.Runner(deployed(), fake, attempts=2, pause=0)
    result = runner.run(conn.Check("pod-to-clusterip", "control0", "w.1"))
    assert (result.ok, result.attempts, result.error, result.refused) == (
        False,
        2,
        "TIMEOUT",
        False,
    )
    assert result.earlier_errors == ["TIMEOUT"]
    exec_failed = FakeExec({"10.32.0.101:8080": [(None, "exec in client-control0 failed: x")]})
    result = conn.Runner(deployed(), exec_failed, attempts=1).run(
        conn.Check("pod-to-clusterip", "control0", "w.1")
    )
    assert result.error == "exec in client-control0 failed: x"


def test_runner_refuses_a_nodeport_whose_route_changed_and_never_probes_it():
    probed = []
    runner = conn.Runner(
        deployed(),
        None,
        route_guard=lambda node: f"refusing to probe {node.name}",
        probe=lambda *args: probed.append(args),
    )
    result = runner.run(conn.Check("nodeport", conn.WORKSTATION, "w.1"))
    assert (result.ok, result.refused, result.attempts) == (False, True, 1)
    assert result.error == "refusing to probe w.1" and not probed
    ok = conn.Runner(deployed(), None, probe=lambda address, port, timeout: (True, "server-w-1"))
    result = ok.run(conn.Check("nodeport", conn.WORKSTATION, "w.1"))
    assert (result.ok, result.answer, result.destination) == (True, "server-w-1", "10.9.0.12:31234")


def test_run_checks_keeps_the_plans_order_and_runs_them_side_by_side():
    class Slow:
        def run(self, pod, command, timeout):
            time.sleep(0.2)
            return 0, ""

    nodes = two_nodes()
    checks = [c for c in conn.plan([n.name for n in nodes]) if c.kind != "nodeport"]
    runner = conn.Runner(deployed(nodes), Slow())
    started = time.monotonic()
    results = conn.run_checks(runner, checks, parallel=len(checks))
    assert time.monotonic() - started < 0.2 * len(checks) / 2
    assert [(r.check, r.source, r.target) for r in results] == [
        (c.kind, c.source, c.target) for c in checks
    ]


def test_nodeport_probe_over_loopback():
    """netexec's /hostname, served here on loopback by a stand-in HTTP server."""
    import http.server
    import threading

    class Hostname(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"server-w-1" if self.path == "/hostname" else b"?"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hostname)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert conn.probe_nodeport("127.0.0.1", server.server_port, 2) == (True, "server-w-1")
    finally:
        server.shutdown()
        server.server_close()
    ok, said = conn.probe_nodeport("127.0.0.1", server.server_port, 1)
    assert not ok and "refused" in said.lower()


# The report.


def result(kind="pod-to-pod", ok=True, **kw):
    defaults = dict(
        check=kind,
        source="worker0",
        target="worker1",
        destination="10.5.0.3:8080",
        ok=ok,
        ms=12,
        attempts=1,
    )
    return conn.Result(**{**defaults, **kw})


def report(results):
    return conn.Report(
        "ns",
        "img",
        [{"name": "worker0", "address": "a"}, {"name": "worker1", "address": "b"}],
        [{"node": "worker2", "reason": "not Ready"}],
        results,
        seconds=9.25,
        checks_seconds=3.5,
    )


def test_exit_codes():
    assert conn.exit_code([result(), result()]) == 0
    assert conn.exit_code([result(), result(ok=False, error="TIMEOUT")]) == 1
    assert conn.exit_code([result(ok=False), result(ok=False, refused=True)]) == 2
    assert conn.exit_code([]) == 1


def test_table():
    text = conn.table(
        report(
            [
                result(),
                result(
                    "nodeport", source="workstation", destination="b:30001", answer="server-worker0"
                ),
                result("pod-to-dns", ok=False, ms=5012, attempts=3, error="DNS: no such host"),
            ]
        )
    )
    lines = text.splitlines()
    assert lines[0].split() == ["CHECK", "FROM", "TO", "RESULT", "TIME", "DETAIL"]
    assert lines[1].split() == [
        "pod-to-pod",
        "worker0",
        "->",
        "worker1",
        "ok",
        "12ms",
        "10.5.0.3:8080",
    ]
    assert lines[2].endswith("b:30001 (answered by server-worker0)")
    assert lines[3].split()[:6] == ["pod-to-dns", "worker0", "->", "worker1", "FAIL", "5012ms"]
    assert lines[3].endswith("10.5.0.3:8080: DNS: no such host")
    # Columns line up.
    assert len({line.index("->") for line in lines[1:4]}) == 1
    assert {line.index("worker1") for line in lines[1:4]} == {lines[0].index("TO")}
    assert "skipped node worker2: not Ready" in text
    assert lines[-1] == "2/3 checks passed on 2 nodes (1 FAILED) in 9.2s, checks 3.5s"


def test_json():
    data = json.loads(json.dumps(report([result(), result(ok=False, error="TIMEOUT")]).as_dict()))
    assert (data["ok"], data["passed"], data["failed"]) == (False, 1, 1)
    assert data["skipped_nodes"] == [{"node": "worker2", "reason": "not Ready"}]
    assert data["checks"][1] == {
        "check": "pod-to-pod",
        "source": "worker0",
        "target": "worker1",
        "destination": "10.5.0.3:8080",
        "ok": False,
        "ms": 12,
        "attempts": 1,
        "same_node": False,
        "answer": None,
        "error": "TIMEOUT",
        "refused": False,
        "earlier_errors": [],
    }
    assert json.loads(json.dumps(report([result()]).as_dict()))["ok"] is True


# The run against a fake API: what it creates, and that it always deletes it.


class FakeCore:
    def __init__(self, api):
        self.api = api

    def create_namespace(self, body, **_):
        self.api.namespace = body

    def create_namespaced_service(self, namespace, body, **_):
        self.api.created.append(body["metadata"]["name"])

    def create_namespaced_pod(self, namespace, body, **_):
        self.api.created.append(body["metadata"]["name"])

    def delete_namespace(self, namespace, **_):
        self.api.deleted.append(namespace)
        self.api.namespace = None


class FakeCluster:
    """The API's answers as JSON; pods in the state ``pod_state`` says for each name."""

    server = "https://fake:6443"

    def __init__(self, nodes, pod_state):
        self.nodes = nodes
        self.pod_state = pod_state
        self.namespace = None
        self.created = []
        self.deleted = []
        self.core = FakeCore(self)

    def call(self, function, *args, **kwargs):
        kwargs.pop("_request_timeout", None)
        return function(*args, **kwargs)

    def get(self, path, **query):
        from kubernetes.client.rest import ApiException

        if path == "/api/v1/nodes":
            return {"items": self.nodes}
        if path.startswith("/api/v1/namespaces/default/services/kubernetes"):
            return {"spec": {"ports": [{"name": "https", "port": 443}]}}
        if path == "/api/v1/namespaces/cilium-lab-connectivity":
            if self.namespace is None:
                raise ApiException(status=404, reason="Not Found")
            return self.namespace
        if path.endswith("/pods"):
            return {"items": [self.pod_state(n) for n in self.created if not n.startswith("echo")]}
        if path.endswith("/events"):
            return {"items": []}
        raise AssertionError(f"unexpected GET {path}")


def quiet(_line):
    pass


def test_run_fails_at_once_on_an_unpullable_image_and_deletes_its_namespace():
    def state(name):
        pod = pod_json(name, waiting="ContainerCreating")
        if name == "server-b":
            pod = pod_json(name, waiting="ErrImagePull", message="not found")
        pod["spec"]["nodeName"] = name.split("-")[1]
        return pod

    cluster = FakeCluster([node_json("a", "127.0.0.2"), node_json("b", "127.0.0.3")], state)
    options = conn.Options(image="reg/nope:1", timeout=60)
    started = time.monotonic()
    with pytest.raises(ClusterError, match=r"^the image reg/nope:1 cannot be pulled on node b "):
        conn.run(cluster, options, quiet, quiet)
    assert time.monotonic() - started < 5
    assert len(cluster.created) == 3 + 6
    assert cluster.deleted == ["cilium-lab-connectivity"]


def test_run_on_sigterm_while_waiting_deletes_its_namespace():
    def state(name):
        # The signal a user sends once the pods exist (as a handler would raise it).
        conn._raise_interrupted(signal.SIGTERM, None)

    cluster = FakeCluster([node_json("a", "127.0.0.2")], state)
    with pytest.raises(conn.Interrupted):
        conn.run(cluster, conn.Options(), quiet, quiet)
    assert cluster.deleted == ["cilium-lab-connectivity"]


def test_run_keeps_the_namespace_with_keep():
    cluster = FakeCluster(
        [node_json("a", "127.0.0.2")],
        lambda name: pod_json(name, waiting="ErrImagePull"),
    )
    with pytest.raises(ClusterError):
        conn.run(cluster, conn.Options(keep=True), quiet, quiet)
    assert cluster.deleted == [] and cluster.namespace is not None


def test_run_refuses_a_namespace_of_someone_elses_and_creates_nothing():
    cluster = FakeCluster([node_json("a", "127.0.0.2")], pod_json)
    cluster.namespace = {"metadata": {"name": "cilium-lab-connectivity", "labels": {}}}
    with pytest.raises(ClusterError, match="is not one of cilium-lab connectivity's"):
        conn.run(cluster, conn.Options(timeout=2), quiet, quiet)
    assert cluster.created == [] and cluster.deleted == []


def test_run_refuses_a_nodeport_routed_off_this_machine_before_any_change(monkeypatch):
    monkeypatch.setattr(conn, "lookup_route", lambda address: conn.Route("default", "eth0", "gw"))
    cluster = FakeCluster([node_json("a", "10.250.7.11")], pod_json)
    with pytest.raises(ClusterError, match=r"^refusing to probe the NodePort on a \(10.250.7.11\)"):
        conn.run(cluster, conn.Options(timeout=2), quiet, quiet)
    assert cluster.created == []


# The command: bad input is one line and exit 2.


def test_unreadable_kubeconfig_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "kubeconfig"
    bad.write_text("clusters: [\n")
    run = CliRunner().invoke(cli, ["connectivity", "--kubeconfig", str(bad)])
    assert run.exit_code == 2
    assert run.output.startswith(f"cilium-lab: kubeconfig {bad} cannot be read as YAML")
    assert len(run.output.strip().splitlines()) == 1
    missing = CliRunner().invoke(cli, ["connectivity", "--kubeconfig", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_an_api_server_that_does_not_answer_is_exit_2_at_once(tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "x"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    started = time.monotonic()
    run = CliRunner().invoke(cli, ["connectivity", "--kubeconfig", str(kubeconfig)])
    assert run.exit_code == 2, run.output
    assert run.output.startswith("cilium-lab: cannot reach the API server https://127.0.0.1:1")
    assert time.monotonic() - started < 10


def test_empty_image_is_refused():
    run = CliRunner().invoke(cli, ["connectivity", "--image", " "])
    assert (run.exit_code, run.output) == (2, "cilium-lab: --image is empty\n")


# Where the image comes from.


def test_group_data_names_the_default_image():
    data = runpy.run_path(str(inventory.REPO_INVENTORIES / "group_data" / "local.py"))
    assert data["connectivity_image"] == conn.DEFAULT_IMAGE


def test_the_real_sims_inventory_names_its_registrys_agnhost(tmp_path):
    cfg = SimConfig(
        home=str(tmp_path),
        bridge="cilx",
        subnet="10.254.7.0/24",
        nodes=["control0", "control1"],
        control_plane=True,
        data_plane="real",
    )
    local = runpy.run_path(_write(tmp_path, inventory.render(cfg)))["local"][0][1]
    assert local["connectivity_image"] == "10.254.7.1:5000/agnhost:1.34.4"
    cfg.data_plane = "kwok"
    local = runpy.run_path(_write(tmp_path, inventory.render(cfg)))["local"][0][1]
    assert "connectivity_image" not in local


def _write(tmp_path, text):
    path = tmp_path / "inv.py"
    path.write_text(text)
    return str(path)


def test_runner_tries_a_timed_out_check_again_only_within_twice_its_time():
    class Hanging:
        calls = 0

        def run(self, pod, command, timeout):
            Hanging.calls += 1
            time.sleep(0.12)
            return None, f"no answer from agnhost connect in {pod} within {timeout:g}s"

    runner = conn.Runner(deployed(), Hanging(), timeout=0.1, attempts=5, pause=0)
    result = runner.run(conn.Check("pod-to-dns", "control0", "w.1"))
    assert (result.ok, Hanging.calls) == (False, 2)
    assert result.error.endswith("(its name lookup has no timeout of its own)")

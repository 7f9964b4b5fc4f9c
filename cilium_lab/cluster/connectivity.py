"""
``cilium-lab connectivity``: does the cluster's network carry what its pods need? A check a user
runs on their own cluster too, before and after the migration.

In a namespace of its own it starts, on every Ready node (pinned with ``nodeName``, tolerating
every taint): a server pod (agnhost ``netexec``, HTTP on :data:`PORT`), a client pod and a
host-network client pod (agnhost ``pause``); a ClusterIP Service per node selecting that node's
server, and one NodePort Service over every server. Then it checks, side by side:

- ``pod-to-pod``: a client reaches the server on its own node and on every other node;
- ``pod-to-clusterip``: a client reaches the Service whose backend is on the next node;
- ``pod-to-dns``: the same, by the Service's name through the cluster DNS;
- ``pod-to-apiserver``: a client reaches the API server through ``kubernetes.default``;
- ``hostnet-to-clusterip``: a host-network pod reaches a ClusterIP;
- ``nodeport``: this machine (the workstation) reaches the NodePort on every node's address.

Every pod-level check runs inside a pod (an exec of ``agnhost connect HOST:PORT --timeout``
through the API server, the official client's stream API): the workstation never sends a
packet to a pod or a Service address. The only packets it sends are the NodePort probes, to the
nodes' InternalIPs, and only where this machine's kernel routes them over a route of their own,
not the default route (:func:`route_problem`).

Exit codes: 0 every check passed, 1 a check failed, 2 it cannot run (bad input, an unreadable
kubeconfig, an API server that does not answer, an image that cannot be pulled, no Ready node, a
NodePort it refuses to probe); 130 and 143 after SIGINT and SIGTERM. The namespace is deleted,
and waited for, whatever happens (``keep`` leaves it).
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field

import click
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream

from cilium_lab.cluster import ClusterError, kube
from cilium_lab.cluster.commands import clear_errors, kubeconfig_options, output_option
from cilium_lab.cluster.kube import Cluster, one_line
from cilium_lab.cluster.verify import condition, lookup, name

# Kubernetes' own e2e test image, at the tag k8s.io/kubernetes v1.34.4's e2e tests use
# (test/utils/image/manifest.go: configs[Agnhost]). Its entrypoint is /agnhost.
DEFAULT_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.56"
DEFAULT_NAMESPACE = "cilium-lab-connectivity"
AGNHOST = "/agnhost"
PORT = 8080
# What this command labels its namespace and pods with.
LABEL = "cilium-lab/connectivity"
NODE_LABEL = "cilium-lab/connectivity-node"
WORKSTATION = "workstation"
API_TARGET = "kubernetes.default"

# The order of the table, and what each check is.
CHECKS = {
    "pod-to-pod": "a client pod to the server pod on a node (its own and every other)",
    "pod-to-clusterip": "a client pod to a ClusterIP Service whose backend is on the next node",
    "pod-to-dns": "a client pod to that Service by name, through the cluster DNS",
    "pod-to-apiserver": f"a client pod to the API server through {API_TARGET}",
    "hostnet-to-clusterip": "a host-network pod to a ClusterIP Service on the next node",
    "nodeport": "this machine to the NodePort Service on every node's InternalIP",
}

# A container waiting for one of these will not start by waiting longer.
PULL_FAILURES = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
START_FAILURES = (
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "StartError",
)


# The nodes and the plan.


@dataclass(frozen=True)
class Node:
    name: str
    address: str | None  # the InternalIP (IPv4 first)
    slug: str  # the part of this node's pod and Service names


@dataclass(frozen=True)
class Check:
    kind: str
    source: str  # a node's name, or WORKSTATION
    target: str  # a node's name, or API_TARGET

    @property
    def same_node(self) -> bool:
        return self.source == self.target


def node_address(node: dict) -> str | None:
    """A Node's InternalIP, an IPv4 one when it has both."""
    addresses = [
        a.get("address")
        for a in lookup(node, "status", "addresses", default=[])
        if a.get("type") == "InternalIP" and a.get("address")
    ]
    v4 = [a for a in addresses if ":" not in a]
    return (v4 or addresses or [None])[0]


def slugs(names: list[str]) -> dict[str, str]:
    """A DNS label part per node name (lower case, a-z0-9-, at most 40 characters), unique."""
    result: dict[str, str] = {}
    for index, node in enumerate(names):
        slug = re.sub(r"[^a-z0-9-]+", "-", node.lower())[:40].strip("-") or "node"
        if slug in result.values():
            slug = f"{slug[:36]}-{index}"
        result[node] = slug
    return result


def select_nodes(items: list[dict], wanted: tuple[str, ...] = ()) -> tuple[list[Node], list[dict]]:
    """The Ready Linux nodes to check (those named in ``wanted``, else all), and the others
    skipped (``{"node", "reason"}``). A named node that is missing or not Ready is an error."""
    by_name = {name(item): item for item in items}
    for node in wanted:
        if node not in by_name:
            raise ClusterError(
                f"no node named {node!r} in the cluster (nodes: {', '.join(sorted(by_name)) or 'none'})"
            )
    chosen, skipped = [], []
    for node, item in by_name.items():
        if wanted and node not in wanted:
            continue
        os_label = lookup(item, "metadata", "labels", "kubernetes.io/os", default="linux")
        if os_label != "linux":
            reason = f"a {os_label} node (agnhost runs on Linux here)"
        elif condition(item, "Ready") != "True":
            reason = "not Ready"
        elif not node_address(item):
            reason = "no InternalIP"
        else:
            chosen.append(item)
            continue
        if wanted:
            raise ClusterError(f"node {node} cannot be checked: {reason}")
        skipped.append({"node": node, "reason": reason})
    if not chosen:
        said = "; ".join(f"{s['node']}: {s['reason']}" for s in skipped) or "the cluster has none"
        raise ClusterError(f"no Ready node to check ({said})")
    names = slugs([name(item) for item in chosen])
    return [Node(name(item), node_address(item), names[name(item)]) for item in chosen], skipped


def plan(nodes: list[str], nodeport: bool = True) -> list[Check]:
    """Every check, in the table's order. The Service checks from each node go to the next
    node's Service (its own on a one-node cluster)."""
    after = {node: nodes[(i + 1) % len(nodes)] for i, node in enumerate(nodes)}
    checks = [Check("pod-to-pod", n, n) for n in nodes]
    checks += [Check("pod-to-pod", a, b) for a in nodes for b in nodes if a != b]
    checks += [Check("pod-to-clusterip", n, after[n]) for n in nodes]
    checks += [Check("pod-to-dns", n, after[n]) for n in nodes]
    checks += [Check("pod-to-apiserver", n, API_TARGET) for n in nodes]
    checks += [Check("hostnet-to-clusterip", n, after[n]) for n in nodes]
    if nodeport:
        checks += [Check("nodeport", WORKSTATION, n) for n in nodes]
    return checks


# What is deployed.


def server_name(node: Node) -> str:
    return f"server-{node.slug}"


def client_name(node: Node) -> str:
    return f"client-{node.slug}"


def host_name(node: Node) -> str:
    return f"host-{node.slug}"


def service_name(node: Node) -> str:
    return f"echo-{node.slug}"


NODEPORT_SERVICE = "echo-nodeport"


def namespace_body(namespace: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": namespace,
            "labels": {
                LABEL: "true",
                # The host-network pods: a cluster that enforces a Pod Security level by default
                # would refuse them otherwise.
                "pod-security.kubernetes.io/enforce": "privileged",
            },
        },
    }


def _pod(pod_name: str, role: str, node: Node, image: str, args: list[str], **spec) -> dict:
    container = {
        "name": "agnhost",
        "image": image,
        "args": args,
        **spec.pop("container", {}),
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod_name, "labels": {LABEL: role, NODE_LABEL: node.slug}},
        "spec": {
            "nodeName": node.name,
            "tolerations": [{"operator": "Exists"}],
            # A container that exits means the image is not what this command runs: said at
            # once (the pod fails) rather than after restarts.
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "containers": [container],
            **spec,
        },
    }


def pods(nodes: list[Node], image: str) -> list[dict]:
    bodies = []
    for node in nodes:
        bodies.append(
            _pod(
                server_name(node),
                "server",
                node,
                image,
                ["netexec", f"--http-port={PORT}", "--udp-port=-1"],
                container={"ports": [{"name": "http", "containerPort": PORT}]},
            )
        )
        bodies.append(_pod(client_name(node), "client", node, image, ["pause"]))
        bodies.append(
            _pod(
                host_name(node),
                "host",
                node,
                image,
                ["pause"],
                hostNetwork=True,
                dnsPolicy="ClusterFirstWithHostNet",
            )
        )
    return bodies


def _service(service: str, selector: dict, **spec) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": service, "labels": {LABEL: "service"}},
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": PORT, "targetPort": PORT, "protocol": "TCP"}],
            **spec,
        },
    }


def services(nodes: list[Node]) -> list[dict]:
    bodies = [
        _service(service_name(node), {LABEL: "server", NODE_LABEL: node.slug}) for node in nodes
    ]
    bodies.append(_service(NODEPORT_SERVICE, {LABEL: "server"}, type="NodePort"))
    return bodies


@dataclass
class Deployed:
    """What the checks dial, read back from the API once everything is up."""

    namespace: str
    nodes: dict[str, Node]
    server_ips: dict[str, str]
    cluster_ips: dict[str, str]
    node_port: int
    api_port: int = 443
    cluster_domain: str = "cluster.local"

    def pod(self, check: Check) -> str | None:
        """The pod a check runs in (None: from this machine)."""
        if check.kind == "nodeport":
            return None
        node = self.nodes[check.source]
        return host_name(node) if check.kind == "hostnet-to-clusterip" else client_name(node)

    def destination(self, check: Check) -> str:
        if check.kind == "pod-to-pod":
            return _host_port(self.server_ips[check.target], PORT)
        if check.kind in ("pod-to-clusterip", "hostnet-to-clusterip"):
            return _host_port(self.cluster_ips[check.target], PORT)
        if check.kind == "pod-to-dns":
            service = service_name(self.nodes[check.target])
            return f"{service}.{self.namespace}.svc.{self.cluster_domain}:{PORT}"
        if check.kind == "pod-to-apiserver":
            return f"{API_TARGET}:{self.api_port}"
        if check.kind == "nodeport":
            return _host_port(self.nodes[check.target].address, self.node_port)
        raise ValueError(f"unknown check {check.kind}")


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# Pods starting: what they wait for, and what waiting will not mend.


def _containers(pod: dict) -> dict[str, str]:
    """Container name -> image, from the pod's spec."""
    return {
        c.get("name"): c.get("image")
        for c in lookup(pod, "spec", "containers", default=[])
        + lookup(pod, "spec", "initContainers", default=[])
    }


def pod_failure(pod: dict) -> str | None:
    """Why a pod will never run (an image that cannot be pulled, a container that cannot start
    or exited, a failed pod), naming the image and the node; None while it may still."""
    pod_name = name(pod)
    node = lookup(pod, "spec", "nodeName", default="?")
    images = _containers(pod)
    statuses = lookup(pod, "status", "initContainerStatuses", default=[]) + lookup(
        pod, "status", "containerStatuses", default=[]
    )
    for status in statuses:
        image = images.get(status.get("name")) or status.get("image")
        waiting = lookup(status, "state", "waiting", default={})
        reason = waiting.get("reason")
        message = one_line(Exception(waiting.get("message") or "")) if waiting else ""
        detail = f"{reason}: {message}" if message else reason
        if reason in PULL_FAILURES:
            return f"the image {image} cannot be pulled on node {node} ({detail})"
        if reason in START_FAILURES:
            return f"pod {pod_name} on node {node} cannot start the image {image} ({detail})"
        terminated = lookup(status, "state", "terminated", default={})
        if terminated:
            said = terminated.get("message") or terminated.get("reason") or ""
            return (
                f"pod {pod_name} on node {node}: the container of {image} exited with code "
                f"{terminated.get('exitCode')}{f' ({one_line(Exception(said))})' if said else ''}; "
                f"is it agnhost (its {AGNHOST} with netexec, pause and connect)?"
            )
    if lookup(pod, "status", "phase") == "Failed":
        said = lookup(pod, "status", "message") or lookup(pod, "status", "reason") or "failed"
        return f"pod {pod_name} on node {node} failed: {one_line(Exception(said))}"
    return None


def pod_waiting(pod: dict) -> str | None:
    """What a pod still waits for (its phase or its container's state), None once it runs,
    Ready, with an IP."""
    if (
        lookup(pod, "status", "phase") == "Running"
        and condition(pod, "Ready") == "True"
        and lookup(pod, "status", "podIP")
    ):
        return None
    for status in lookup(pod, "status", "containerStatuses", default=[]):
        reason = lookup(status, "state", "waiting", "reason")
        if reason:
            return reason
    return lookup(pod, "status", "phase", default="not yet seen")


def pods_progress(waiting: dict[str, str], total: int, events: dict[str, str]) -> str:
    """One line: how many pods run, and what the first few of the others wait for."""
    said = [
        f"{pod} ({why}{f': {events[pod]}' if pod in events else ''})"
        for pod, why in sorted(waiting.items())
    ]
    more = f", and {len(said) - 4} more" if len(said) > 4 else ""
    return f"{total - len(waiting)}/{total} pods running; waiting for {', '.join(said[:4])}{more}"


# Routes: which packets the workstation may send.


@dataclass(frozen=True)
class Route:
    """The route this machine's kernel picks for an address (its FIB entry)."""

    destination: str  # "default", a prefix, or an address
    device: str | None = None
    gateway: str | None = None
    kind: str = "unicast"  # or local, unreachable, blackhole, prohibit...

    @property
    def is_default(self) -> bool:
        return self.destination in ("default", "0.0.0.0/0", "::/0")


class RouteUnknown(Exception):
    """This machine cannot say how it routes an address."""


def parse_fibmatch(text: str) -> Route:
    """``ip -j route get fibmatch ADDRESS``'s answer: the routing table entry the kernel chose,
    with its prefix (``route get`` without fibmatch gives the address back, not the prefix)."""
    try:
        entries = json.loads(text)
    except ValueError as error:
        raise RouteUnknown(f"ip route get said {text.strip()[:80]!r}: {error}") from None
    if not entries:
        raise RouteUnknown("ip route get found no route")
    entry = entries[0]
    return Route(
        destination=entry.get("dst", "?"),
        device=entry.get("dev"),
        gateway=entry.get("gateway"),
        kind=entry.get("type", "unicast"),
    )


def parse_bsd_route_get(text: str) -> Route:
    """macOS's and the BSDs' ``route -n get ADDRESS``: ``destination: default`` for the
    default route."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    if "destination" not in fields:
        raise RouteUnknown(f"route get said {text.strip()[:80]!r}")
    destination = fields["destination"]
    if destination != "default" and fields.get("mask"):
        try:
            destination = str(ipaddress.ip_network(f"{destination}/{fields['mask']}", strict=False))
        except ValueError:
            pass
    return Route(destination, fields.get("interface"), fields.get("gateway"))


def lookup_route(address: str) -> Route:
    """How this machine routes ``address``: the kernel's own lookup, rules and tables
    included (iproute2's fibmatch on Linux, ``route -n get`` elsewhere). No packet is sent."""
    if shutil.which("ip"):
        proc = subprocess.run(
            ["ip", "-j", "route", "get", "fibmatch", address], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise RouteUnknown(proc.stderr.strip() or f"ip route get exited {proc.returncode}")
        return parse_fibmatch(proc.stdout)
    if shutil.which("route") and sys.platform != "win32":
        proc = subprocess.run(["route", "-n", "get", address], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RouteUnknown(proc.stderr.strip() or f"route get exited {proc.returncode}")
        return parse_bsd_route_get(proc.stdout)
    raise RouteUnknown("neither `ip` (iproute2) nor `route` is installed")


def route_problem(
    node: str,
    address: str,
    route: Route | None,
    why_unknown: str | None = None,
    device: str | None = None,
    allow_default: bool = False,
) -> str | None:
    """Why this machine must not probe ``node``'s NodePort at ``address``, or None.

    A node's address reached through the default route would send the probe off this machine
    (a lab's nodes sit on a network of this machine's own: the guide's bridge, the sim's);
    so would one routed elsewhere than the ``device`` the lab names, and one with no route.
    ``allow_default``: the nodes really are behind the default gateway."""
    where = f"the NodePort on {node} ({address})"
    if route is None:
        return f"refusing to probe {where}: cannot tell how this machine routes it ({why_unknown}); use --no-nodeport"
    if route.kind in ("unreachable", "blackhole", "prohibit", "throw"):
        return f"refusing to probe {where}: this machine's route to it is {route.kind}"
    if route.kind == "local":
        return None
    if device and route.device != device:
        return (
            f"refusing to probe {where}: this machine routes it via {route.device or '?'}"
            f" ({route.destination}), not {device}, where the lab's nodes are"
        )
    if route.is_default and not allow_default:
        return (
            f"refusing to probe {where}: this machine routes it via the default route "
            f"(via {route.gateway or '?'} on {route.device or '?'}), off this machine, where the "
            "lab's nodes are on a network of their own; --allow-default-route if they really are "
            "beyond the default gateway, or --no-nodeport"
        )
    return None


def check_routes(
    nodes: list[Node], device: str | None = None, allow_default: bool = False, lookup=None
) -> list[str]:
    """The refusals for every node's NodePort (see :func:`route_problem`)."""
    lookup = lookup or lookup_route
    problems = []
    for node in nodes:
        try:
            route, why = lookup(node.address), None
        except RouteUnknown as error:
            route, why = None, str(error)
        problem = route_problem(node.name, node.address, route, why, device, allow_default)
        if problem:
            problems.append(problem)
    return problems


# Running a check.


@dataclass
class Result:
    check: str
    source: str
    target: str
    destination: str  # what was dialled
    ok: bool
    ms: int | None  # the passing (or last) attempt: the exec's round trip through the API server
    attempts: int
    same_node: bool = False
    answer: str | None = None  # the NodePort probe: which server answered
    error: str | None = None
    # Not probed: this machine refused to send it (see route_problem).
    refused: bool = False
    # What the attempts before the last one said (a Service not yet programmed: REFUSED).
    earlier_errors: list[str] = field(default_factory=list)


def exec_status(text: str) -> tuple[int | None, str]:
    """An exec's status from its error channel: (exit code, message); (None, why) when the
    command did not run to an exit (not started, the stream cut)."""
    if not text or not text.strip():
        return None, "the exec ended without a status"
    try:
        status = yaml.safe_load(text)
    except yaml.YAMLError:
        return None, one_line(Exception(text))
    if not isinstance(status, dict):
        return None, one_line(Exception(text))
    if status.get("status") == "Success":
        return 0, ""
    for cause in lookup(status, "details", "causes", default=[]):
        if cause.get("reason") == "ExitCode":
            try:
                return int(cause.get("message")), status.get("message", "")
            except (TypeError, ValueError):
                break
    return None, one_line(Exception(status.get("message") or text))


class PodExec:
    """Commands in the namespace's pods, through the API server's exec (a websocket).

    The client's ``stream`` swaps the ApiClient's ``call_api`` while it opens a stream, so
    each thread has an ApiClient of its own (one configuration, one set of credentials)."""

    def __init__(self, cluster: Cluster, namespace: str):
        self.configuration = cluster.api_client.configuration
        self.namespace = namespace
        self._local = threading.local()

    def _core(self) -> client.CoreV1Api:
        core = getattr(self._local, "core", None)
        if core is None:
            core = self._local.core = client.CoreV1Api(client.ApiClient(self.configuration))
        return core

    def run(self, pod: str, command: list[str], timeout: float) -> tuple[int | None, str]:
        """(exit code or None, what the command and the exec said)."""
        try:
            response = stream(
                self._core().connect_get_namespaced_pod_exec,
                pod,
                self.namespace,
                command=command,
                container="agnhost",
                stdin=False,
                stdout=True,
                stderr=True,
                tty=False,
                _preload_content=False,
                _request_timeout=timeout,
            )
        except ApiException as error:
            return None, f"exec in {pod} failed: {one_line(Exception(error.reason or error))}"
        try:
            response.run_forever(timeout=timeout)
            if response.is_open():
                return None, f"no answer from agnhost connect in {pod} within {timeout:g}s"
            code, message = exec_status(response.read_channel(3))
            output = one_line(Exception(response.read_all() or ""))
        except Exception as error:  # the websocket library's own errors
            return None, f"exec in {pod} failed: {one_line(error)}"
        finally:
            response.close()
        return code, output or message


def probe_nodeport(address: str, port: int, timeout: float) -> tuple[bool, str]:
    """(ok, the answering server's name or the error): GET /hostname from netexec, straight to
    the node (no proxy from the environment)."""
    connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        connection.request("GET", "/hostname")
        response = connection.getresponse()
        body = response.read(256).decode(errors="replace").strip()
        if response.status != 200:
            return False, f"HTTP {response.status} {response.reason}"
        return True, body
    except (OSError, http.client.HTTPException) as error:
        return False, one_line(error) or type(error).__name__
    finally:
        connection.close()


@dataclass
class Runner:
    """Runs checks against what is deployed: retried a few times, a second apart (a data plane
    programs a new Service a moment after its endpoints exist)."""

    deployed: Deployed
    pod_exec: PodExec | None
    timeout: float = 5.0  # seconds per attempt
    attempts: int = 3
    route_guard: object = None  # node address -> refusal or None, checked before every probe
    probe: object = staticmethod(probe_nodeport)
    pause: float = 1.0

    def run(self, check: Check) -> Result:
        destination = self.deployed.destination(check)
        result = Result(
            check.kind,
            check.source,
            check.target,
            destination,
            False,
            None,
            0,
            same_node=check.same_node,
        )
        first = time.monotonic()
        for attempt in range(1, self.attempts + 1):
            if result.error:
                result.earlier_errors.append(result.error)
            result.attempts = attempt
            started = time.monotonic()
            ok, said = self._attempt(check, destination, result)
            result.ms = round((time.monotonic() - started) * 1000)
            if result.refused:
                result.error = said
                return result
            if ok:
                result.ok, result.error = True, None
                if check.kind == "nodeport":
                    result.answer = said
                return result
            result.error = said
            # Quick failures are tried again (a Service its data plane programs a moment after
            # its endpoints exist); timeouts only within twice the attempt's time.
            if attempt == self.attempts or time.monotonic() - first > 2 * self.timeout:
                break
            time.sleep(self.pause)
        return result

    def _attempt(self, check: Check, destination: str, result: Result) -> tuple[bool, str]:
        if check.kind == "nodeport":
            node = self.deployed.nodes[check.target]
            refusal = self.route_guard(node) if self.route_guard else None
            if refusal:
                result.refused = True
                return False, refusal
            return self.probe(node.address, self.deployed.node_port, self.timeout)
        command = [AGNHOST, "connect", destination, f"--timeout={self.timeout:g}s"]
        code, said = self.pod_exec.run(self.deployed.pod(check), command, timeout=self.timeout + 10)
        if code == 0:
            return True, ""
        if code is None:
            if said.startswith("no answer") and check.kind in ("pod-to-dns", "pod-to-apiserver"):
                said += " (its name lookup has no timeout of its own)"
            return False, said
        return False, said or f"agnhost connect exited {code}"


def run_checks(runner: Runner, checks: list[Check], parallel: int, progress=None) -> list[Result]:
    """Every check, ``parallel`` at a time; results in the plan's order. Progress every 3 s."""
    results: dict[int, Result] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, min(parallel, len(checks))))
    try:
        futures = {pool.submit(runner.run, check): i for i, check in enumerate(checks)}
        last = time.monotonic()
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            if progress and time.monotonic() - last >= 3:
                last = time.monotonic()
                progress(f"{len(results)}/{len(checks)} checks done")
    finally:
        # On Ctrl-C: drop the checks not started; those running end with their timeouts.
        pool.shutdown(wait=False, cancel_futures=True)
    return [results[i] for i in range(len(checks))]


# The report.


@dataclass
class Report:
    namespace: str
    image: str
    nodes: list[dict]
    skipped: list[dict]
    results: list[Result]
    seconds: float = 0.0  # the whole run, cleanup included
    checks_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(1 for r in self.results if r.ok)

    @property
    def failed(self) -> int:
        return len(self.results) - self.passed

    def as_dict(self) -> dict:
        return {
            "ok": exit_code(self.results) == 0 and not self.problems,
            "passed": self.passed,
            "failed": self.failed,
            "namespace": self.namespace,
            "image": self.image,
            "nodes": self.nodes,
            "skipped_nodes": self.skipped,
            "seconds": round(self.seconds, 2),
            "checks_seconds": round(self.checks_seconds, 2),
            "checks": [asdict(r) for r in self.results],
            "problems": self.problems,
        }


def exit_code(results: list[Result]) -> int:
    """2 when a probe was refused (it could not run as asked), 1 when a check failed, else 0."""
    if any(r.refused for r in results):
        return 2
    if not results or not all(r.ok for r in results):
        return 1
    return 0


def table(report: Report) -> str:
    rows = [("CHECK", "FROM", "", "TO", "RESULT", "TIME", "DETAIL")]
    for r in report.results:
        detail = r.destination
        if r.answer:
            detail += f" (answered by {r.answer})"
        if r.attempts > 1 and r.ok:
            detail += f" (attempt {r.attempts})"
        if r.error:
            detail += f": {r.error}"
        rows.append(
            (
                r.check,
                r.source,
                "->",
                r.target,
                "ok" if r.ok else ("REFUSED" if r.refused else "FAIL"),
                f"{r.ms}ms" if r.ms is not None else "-",
                detail,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
    ]
    lines.append("")
    for skip in report.skipped:
        lines.append(f"skipped node {skip['node']}: {skip['reason']}")
    for problem in report.problems:
        lines.append(f"problem: {problem}")
    verdict = "all passed" if report.failed == 0 else f"{report.failed} FAILED"
    lines.append(
        f"{report.passed}/{len(report.results)} checks passed on {len(report.nodes)} nodes "
        f"({verdict}) in {report.seconds:.1f}s, checks {report.checks_seconds:.1f}s"
    )
    return "\n".join(lines)


# Deploying, waiting, cleaning up.


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum, _frame):
    raise Interrupted(signum)


def _not_found(error: ApiException) -> bool:
    return error.status == 404


def read_nodes(cluster: Cluster) -> list[dict]:
    return cluster.get("/api/v1/nodes").get("items", [])


def api_port(cluster: Cluster) -> int:
    """The port of the ``kubernetes`` Service in ``default`` (443 unless changed)."""
    try:
        service = cluster.get("/api/v1/namespaces/default/services/kubernetes")
    except ApiException:
        return 443
    ports = lookup(service, "spec", "ports", default=[])
    return next((p["port"] for p in ports if p.get("name") == "https"), None) or (
        ports[0]["port"] if ports else 443
    )


def _namespace(cluster: Cluster, namespace: str) -> dict | None:
    try:
        return cluster.get(f"/api/v1/namespaces/{namespace}")
    except ApiException as error:
        if _not_found(error):
            return None
        raise


def is_ours(namespace: dict) -> bool:
    return lookup(namespace, "metadata", "labels", LABEL) == "true"


def prepare_namespace(cluster: Cluster, namespace: str, timeout: float, progress) -> None:
    """Room for the namespace: one left by an earlier run (``--keep``, an interrupted cleanup)
    is deleted first; one of someone else's is refused."""
    existing = _namespace(cluster, namespace)
    if existing is None:
        return
    if not is_ours(existing):
        raise ClusterError(
            f"namespace {namespace} exists and is not one of cilium-lab connectivity's (no label "
            f"{LABEL}=true); pick another with --namespace"
        )
    progress(f"namespace {namespace} is left from an earlier run: deleting it first")
    delete_namespace(cluster, namespace, timeout, progress)


def create(cluster: Cluster, namespace: str, nodes: list[Node], image: str) -> None:
    cluster.call(cluster.core.create_namespace, namespace_body(namespace))
    for body in services(nodes):
        cluster.call(cluster.core.create_namespaced_service, namespace, body)
    for body in pods(nodes, image):
        cluster.call(cluster.core.create_namespaced_pod, namespace, body)


def _every(seconds: float):
    """A function that says True once every ``seconds`` (and the first time)."""
    last = [None]

    def due() -> bool:
        now = time.monotonic()
        if last[0] is None or now - last[0] >= seconds:
            last[0] = now
            return True
        return False

    return due


def warning_events(cluster: Cluster, namespace: str) -> dict[str, str]:
    """Pod name -> its latest Warning event (reason: message), e.g. a sandbox the CNI failed."""
    try:
        events = cluster.get(
            f"/api/v1/namespaces/{namespace}/events", fieldSelector="type=Warning"
        ).get("items", [])
    except ApiException:
        return {}
    latest: dict[str, tuple[str, str]] = {}
    for event in events:
        if lookup(event, "involvedObject", "kind") != "Pod":
            continue
        pod = lookup(event, "involvedObject", "name")
        when = event.get("lastTimestamp") or event.get("eventTime") or ""
        said = f"{event.get('reason')}: {one_line(Exception(event.get('message') or ''))}"
        if pod not in latest or when >= latest[pod][0]:
            latest[pod] = (when, said[:160])
    return {pod: said for pod, (_, said) in latest.items()}


def wait_pods(
    cluster: Cluster, namespace: str, expected: list[str], deadline: float, progress
) -> dict[str, dict]:
    """Until every expected pod runs, Ready, with an IP; a pod that never will (its image
    cannot be pulled, its container cannot start) fails at once. Returns the pods by name."""
    started = time.monotonic()
    due = _every(3)
    while True:
        items = cluster.get(f"/api/v1/namespaces/{namespace}/pods").get("items", [])
        by_name = {name(p): p for p in items}
        for pod in items:
            failure = pod_failure(pod)
            if failure:
                raise ClusterError(failure)
        waiting = {
            pod: ("not yet seen" if pod not in by_name else pod_waiting(by_name[pod]))
            for pod in expected
        }
        waiting = {pod: why for pod, why in waiting.items() if why}
        if not waiting:
            return by_name
        late = time.monotonic() > deadline
        if late or due():
            events = warning_events(cluster, namespace)
            line = pods_progress(waiting, len(expected), events)
            if late:
                raise ClusterError(f"the pods did not run within {deadline - started:.0f}s: {line}")
            progress(f"[{time.monotonic() - started:3.0f}s] {line}")
        time.sleep(0.5)


def ready_endpoints(slices: list[dict]) -> dict[str, set[str]]:
    """Service name -> the addresses its EndpointSlices list as ready."""
    ready: dict[str, set[str]] = {}
    for item in slices:
        service = lookup(item, "metadata", "labels", "kubernetes.io/service-name")
        for endpoint in item.get("endpoints") or []:
            if lookup(endpoint, "conditions", "ready", default=True) is not False:
                ready.setdefault(service, set()).update(endpoint.get("addresses") or [])
    return ready


def wait_endpoints(
    cluster: Cluster, namespace: str, wanted: dict[str, set[str]], deadline: float, progress
) -> None:
    """Until every Service's EndpointSlices list its servers as ready."""
    started = time.monotonic()
    due = _every(3)
    while True:
        slices = cluster.get(
            f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices"
        ).get("items", [])
        have = ready_endpoints(slices)
        missing = sorted(s for s, ips in wanted.items() if not ips <= have.get(s, set()))
        if not missing:
            return
        line = f"endpoints of the Services {', '.join(missing)}"
        if time.monotonic() > deadline:
            raise ClusterError(f"no ready {line} within {deadline - started:.0f}s")
        if due():
            progress(f"[{time.monotonic() - started:3.0f}s] {line}")
        time.sleep(0.5)


def delete_namespace(cluster: Cluster, namespace: str, timeout: float, progress) -> None:
    """Delete the namespace and wait until it is gone; a Ctrl-C while the request goes out
    does not stop it (a second one during the wait stops only the wait)."""
    pending: list[int] = []
    previous = {
        s: signal.signal(s, lambda signum, _frame: pending.append(signum))
        for s in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        cluster.call(cluster.core.delete_namespace, namespace, propagation_policy="Background")
    except ApiException as error:
        if not _not_found(error):
            raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if pending:
        raise Interrupted(pending[0])
    started = time.monotonic()
    due = _every(3)
    while _namespace(cluster, namespace) is not None:
        elapsed = time.monotonic() - started
        if elapsed > timeout:
            raise ClusterError(
                f"namespace {namespace} is still being deleted after {timeout:g}s; it goes on "
                "in the cluster (a next run waits for it)"
            )
        if due():
            progress(f"[{elapsed:3.0f}s] namespace {namespace} to be deleted")
        time.sleep(0.5)


@dataclass
class Options:
    namespace: str = DEFAULT_NAMESPACE
    image: str = DEFAULT_IMAGE
    nodes: tuple[str, ...] = ()
    timeout: float = 180.0  # pods and endpoints
    check_timeout: float = 5.0
    attempts: int = 3
    parallel: int = 16
    cleanup_timeout: float = 120.0
    nodeport: bool = True
    route_device: str | None = None
    allow_default_route: bool = False
    cluster_domain: str = "cluster.local"
    keep: bool = False


def run(cluster: Cluster, options: Options, progress, say) -> Report:
    """The whole check: nodes, refusals, deploy, wait, checks, cleanup. ``progress`` says what
    it waits for, ``say`` what it does (both to stderr)."""
    started = time.monotonic()
    nodes, skipped = select_nodes(read_nodes(cluster), options.nodes)
    for skip in skipped:
        say(f"skipping node {skip['node']}: {skip['reason']}")

    def guard(node: Node) -> str | None:
        return (check_routes([node], options.route_device, options.allow_default_route) or [None])[
            0
        ]

    if options.nodeport:
        refusals = check_routes(nodes, options.route_device, options.allow_default_route)
        if refusals:
            more = f" (and {len(refusals) - 1} more nodes)" if len(refusals) > 1 else ""
            raise ClusterError(refusals[0] + more)
    port = api_port(cluster)
    prepare_namespace(cluster, options.namespace, options.cleanup_timeout, progress)
    report = Report(
        options.namespace,
        options.image,
        [{"name": n.name, "address": n.address} for n in nodes],
        skipped,
        [],
    )
    created = False
    failure: BaseException | None = None
    try:
        say(
            f"starting {3 * len(nodes)} pods and {len(nodes) + 1} Services on {len(nodes)} nodes "
            f"in namespace {options.namespace} (image {options.image})"
        )
        created = True
        create(cluster, options.namespace, nodes, options.image)
        deadline = time.monotonic() + options.timeout
        expected = [f(n) for n in nodes for f in (server_name, client_name, host_name)]
        running = wait_pods(cluster, options.namespace, expected, deadline, progress)
        server_ips = {n.name: lookup(running[server_name(n)], "status", "podIP") for n in nodes}
        wanted = {service_name(n): {server_ips[n.name]} for n in nodes}
        wanted[NODEPORT_SERVICE] = set(server_ips.values())
        wait_endpoints(cluster, options.namespace, wanted, deadline, progress)
        deployed = read_deployed(cluster, options, nodes, server_ips, port)
        checks = plan([n.name for n in nodes], nodeport=options.nodeport)
        say(f"running {len(checks)} checks, {min(options.parallel, len(checks))} at a time")
        runner = Runner(
            deployed,
            PodExec(cluster, options.namespace),
            timeout=options.check_timeout,
            attempts=options.attempts,
            route_guard=guard,
        )
        checks_started = time.monotonic()
        report.results = run_checks(runner, checks, options.parallel, progress)
        report.checks_seconds = time.monotonic() - checks_started
    except BaseException as error:
        failure = error
        raise
    finally:
        if created and options.keep:
            say(f"kept namespace {options.namespace} (--keep); a next run deletes it first")
        elif created:
            say(f"deleting namespace {options.namespace}")
            try:
                delete_namespace(cluster, options.namespace, options.cleanup_timeout, progress)
            except Interrupted:
                say(f"not waiting for namespace {options.namespace}: its deletion goes on")
                if failure is None:
                    raise
            except ClusterError as error:
                # The run's own error is the one to say; the cleanup's comes beside it.
                if failure is None:
                    raise
                say(f"cleanup: {error}")
    report.seconds = time.monotonic() - started
    return report


def read_deployed(
    cluster: Cluster, options: Options, nodes: list[Node], server_ips: dict[str, str], port: int
) -> Deployed:
    items = {
        name(s): s
        for s in cluster.get(f"/api/v1/namespaces/{options.namespace}/services").get("items", [])
    }
    cluster_ips = {
        n.name: lookup(items.get(service_name(n), {}), "spec", "clusterIP") for n in nodes
    }
    node_port = next(
        (
            p.get("nodePort")
            for p in lookup(items.get(NODEPORT_SERVICE, {}), "spec", "ports", default=[])
        ),
        None,
    )
    if not all(cluster_ips.values()) or (options.nodeport and not node_port):
        raise ClusterError(f"the Services in {options.namespace} have no ClusterIP or NodePort")
    return Deployed(
        options.namespace,
        {n.name: n for n in nodes},
        server_ips,
        cluster_ips,
        node_port or 0,
        port,
        options.cluster_domain,
    )


# The command.


def _say(line: str) -> None:
    click.echo(f"connectivity: {line}", err=True)


def _progress(line: str) -> None:
    click.echo(f"waiting: {line}", err=True)


@click.command("connectivity")
@kubeconfig_options
@output_option
@click.option(
    "--namespace",
    default=DEFAULT_NAMESPACE,
    show_default=True,
    help="The namespace of its own it creates, and deletes at the end.",
)
@click.option(
    "--image",
    default=DEFAULT_IMAGE,
    show_default=True,
    help="The agnhost image (group data: connectivity_image); the sim's inventory names its "
    "registry's.",
)
@click.option(
    "--node",
    "nodes",
    multiple=True,
    help="Check only these nodes (repeatable; default: every Ready Linux node).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=180,
    show_default=True,
    help="Seconds for the pods to run and the Services to have endpoints.",
)
@click.option(
    "--check-timeout",
    type=click.FloatRange(min=0.1),
    default=5,
    show_default=True,
    help="Seconds for one attempt of a check.",
)
@click.option(
    "--attempts",
    type=click.IntRange(1, 10),
    default=3,
    show_default=True,
    help="Attempts per check, a second apart, before it fails.",
)
@click.option(
    "--parallel",
    type=click.IntRange(1, 64),
    default=16,
    show_default=True,
    help="Checks run at once.",
)
@click.option(
    "--cleanup-timeout",
    type=click.FloatRange(min=1),
    default=120,
    show_default=True,
    help="Seconds to wait for the namespace to be deleted.",
)
@click.option(
    "--no-nodeport",
    is_flag=True,
    help="Do not probe the NodePort from this machine (every pod-level check still runs).",
)
@click.option(
    "--route-dev",
    default=None,
    help="The interface of this machine the nodes are on (e.g. the sim's bridge): a node "
    "address routed elsewhere is refused.",
)
@click.option(
    "--allow-default-route",
    is_flag=True,
    help="Probe NodePorts of nodes this machine reaches through its default route.",
)
@click.option("--cluster-domain", default="cluster.local", show_default=True)
@click.option("--keep", is_flag=True, help="Leave the namespace for debugging.")
@click.option(
    "--cleanup", is_flag=True, help="Only delete the namespace an earlier run left (--keep)."
)
@clear_errors
def connectivity_command(
    kubeconfig,
    context,
    output,
    namespace,
    image,
    nodes,
    timeout,
    check_timeout,
    attempts,
    parallel,
    cleanup_timeout,
    no_nodeport,
    route_dev,
    allow_default_route,
    cluster_domain,
    keep,
    cleanup,
):
    """Check pod, Service, DNS, API server and NodePort connectivity across the nodes.

    Runs pods of its own on every node in a namespace of its own, checks from inside them
    (and the NodePort from this machine), prints a table (or JSON), and deletes the namespace.
    Exit 0: every check passed; 1: a check failed; 2: it cannot run (one line on stderr).
    """
    if not image.strip():
        raise ClusterError("--image is empty")
    options = Options(
        namespace=namespace,
        image=image.strip(),
        nodes=tuple(nodes),
        timeout=timeout,
        check_timeout=check_timeout,
        attempts=attempts,
        parallel=parallel,
        cleanup_timeout=cleanup_timeout,
        nodeport=not no_nodeport,
        route_device=route_dev,
        allow_default_route=allow_default_route,
        cluster_domain=cluster_domain,
        keep=keep,
    )
    previous = {s: signal.signal(s, _raise_interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        cluster = kube.load(kubeconfig, context)
        if cleanup:
            existing = _namespace(cluster, namespace)
            if existing is not None and not is_ours(existing):
                raise ClusterError(f"namespace {namespace} is not one of cilium-lab connectivity's")
            if existing is not None:
                _say(f"deleting namespace {namespace}")
                delete_namespace(cluster, namespace, cleanup_timeout, _progress)
            click.echo(f"namespace {namespace} is gone")
            return
        report = run(cluster, options, _progress, _say)
    except Interrupted as interrupted:
        click.echo(f"cilium-lab: connectivity interrupted ({interrupted})", err=True)
        sys.exit(128 + interrupted.signum)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if output == "json":
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo(table(report))
    code = exit_code(report.results)
    if code == 2:
        refused = next(r for r in report.results if r.refused)
        click.echo(f"cilium-lab: {refused.error}", err=True)
    elif code == 1:
        click.echo(
            f"cilium-lab: {report.failed} of {len(report.results)} connectivity checks failed "
            f"on {cluster.server}",
            err=True,
        )
    sys.exit(code)

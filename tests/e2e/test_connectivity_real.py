"""
``cilium-lab connectivity`` on the real lab (real_lab.py): real kubelets, containerd, runc,
kube-proxy in iptables mode and the bridge CNI, the guide's network before the chapter.

Stand-ins: agnhost comes from the sim's own registry (built from k8s.io/kubernetes v1.34.4's
test/images/agnhost) where a user's cluster pulls registry.k8s.io's; the lab's own routing
table for its pod CIDRs when another lab holds them (real_lab.py).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
import yaml
from kubernetes.client.rest import ApiException

from cilium_lab.cluster import kube
from cilium_lab.cluster.connectivity import API_TARGET, CHECKS, DEFAULT_NAMESPACE, LABEL
from cilium_lab.sim.harness import CILIUM_LAB, REPO

pytestmark = pytest.mark.e2e


def command(lab, *args: str) -> list[str]:
    return [
        str(CILIUM_LAB),
        "connectivity",
        "--kubeconfig",
        str(lab.kubeconfig),
        "--image",
        lab.image(),
        "--route-dev",
        lab.bridge,
        *args,
    ]


def connectivity(lab, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(lab, *args), env=lab.env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def cluster(lab) -> kube.Cluster:
    return kube.load(str(lab.kubeconfig))


def namespace_left(lab, namespace: str = DEFAULT_NAMESPACE) -> bool:
    try:
        cluster(lab).core.read_namespace(namespace)
        return True
    except ApiException as error:
        if error.status == 404:
            return False
        raise


def assert_one_clear_line(result, *expected: str) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("cilium-lab: "), result.stderr
    for text in expected:
        assert text in last, result.stderr


def test_passes_on_the_old_network_with_valid_json(real_lab):
    """The bridge CNI, the workstation's routes and kube-proxy carry every check."""
    started = time.monotonic()
    result = connectivity(real_lab, "-o", "json")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(result.stdout)
    nodes = real_lab.nodes
    n = len(nodes)
    assert (data["ok"], data["passed"], data["failed"]) == (True, n * n + 5 * n, 0)
    assert [node["name"] for node in data["nodes"]] == nodes
    assert {c["check"] for c in data["checks"]} == set(CHECKS)
    pairs = {(c["source"], c["target"]) for c in data["checks"] if c["check"] == "pod-to-pod"}
    assert pairs == {(a, b) for a in nodes for b in nodes}
    nodeports = [c for c in data["checks"] if c["check"] == "nodeport"]
    assert all(c["answer"].startswith("server-") for c in nodeports)
    # Progress on stderr, the report alone on stdout.
    assert "connectivity: starting" in result.stderr and "deleting namespace" in result.stderr
    assert not namespace_left(real_lab)
    print(
        f"\nconnectivity on {n} nodes: {elapsed:.1f}s in all (its own {data['seconds']}s, "
        f"checks {data['checks_seconds']}s)"
    )


BLOCK = (
    "FORWARD -p tcp --dport 8080 -m comment --comment cilium-lab-e2e-block "
    "-j REJECT --reject-with tcp-reset"
)


def test_a_node_that_drops_its_servers_traffic_fails_those_checks_with_exit_1(real_lab):
    """One node rejects what it forwards to port 8080 (its server pod): the checks that reach
    that server from another node fail, the others pass."""
    other, broken = real_lab.nodes[0], real_lab.nodes[-1]
    real_lab.sh(broken, f"iptables -w -I {BLOCK}")
    try:
        result = connectivity(real_lab, "-o", "json", "--attempts", "1")
    finally:
        real_lab.sh(broken, f"iptables -w -D {BLOCK}")
    assert result.returncode == 1, result.stdout + result.stderr
    data = json.loads(result.stdout)
    failed = {(c["check"], c["source"], c["target"]) for c in data["checks"] if not c["ok"]}
    assert ("pod-to-pod", other, broken) in failed
    assert ("pod-to-clusterip", other, broken) in failed
    assert ("pod-to-pod", other, other) not in failed
    assert ("pod-to-apiserver", other, API_TARGET) not in failed
    assert data["ok"] is False and data["failed"] == len(failed)
    assert_one_clear_line(result, f"connectivity checks failed on {cluster(real_lab).server}")
    assert not namespace_left(real_lab)


def test_an_image_that_cannot_be_pulled_exits_2_at_once_naming_it(real_lab):
    image = f"{real_lab.registry}/nope:1"
    started = time.monotonic()
    result = subprocess.run(
        [*command(real_lab), "--image", image],
        env=real_lab.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stdout + result.stderr
    assert_one_clear_line(result, f"the image {image} cannot be pulled on node ")
    # Not the pods' timeout (180 s): the first pull's error ends it, cleanup included.
    assert elapsed < 60, elapsed
    assert not namespace_left(real_lab)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_once_its_pods_exist_leaves_no_namespace(real_lab, signum):
    api = cluster(real_lab)
    proc = subprocess.Popen(
        command(real_lab),
        env=real_lab.env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if api.core.list_namespaced_pod(DEFAULT_NAMESPACE, label_selector=LABEL).items:
                    break
            except ApiException:
                pass
            time.sleep(0.2)
        assert proc.poll() is None, "connectivity ended before its pods existed"
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signum, out + err
    assert "Traceback" not in err, err
    assert "deleting namespace" in err and f"interrupted ({signum.name})" in err, err
    assert not namespace_left(real_lab)


def test_a_bad_kubeconfig_exits_2_with_one_line(real_lab, tmp_path):
    """Credentials the lab's real API server refuses, and a file that is not a kubeconfig."""
    config = yaml.safe_load(real_lab.kubeconfig.read_text())
    for user in config["users"]:
        user["user"] = {"token": "not-a-token"}
    refused = tmp_path / "refused"
    refused.write_text(json.dumps(config))
    result = connectivity(real_lab, "--kubeconfig", str(refused), timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert_one_clear_line(result, "refused the credentials")
    garbage = tmp_path / "garbage"
    garbage.write_text("{{{")
    result = connectivity(real_lab, "--kubeconfig", str(garbage), timeout=60)
    assert result.returncode == 2
    assert_one_clear_line(result, "cannot be read as YAML")
    assert not namespace_left(real_lab)

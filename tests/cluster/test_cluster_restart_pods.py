"""
restart-pods against a real API server (local_control_plane.py): the real controllers,
disruption controller and Eviction API act on the pods; kwok plays the kubelets (the stand-in)
and gives each pod an address from its node's pod CIDR.

Stand-ins, said once: the release is a chart of one ConfigMap installed by the real helm as
``cilium`` in the test's namespace (its history dates the release, as Cilium's would: the
classification reads nothing else of it); Cilium's ``cilium.io`` resources are schema-free
CustomResourceDefinitions of the names and group Cilium's operator registers, with objects
written as Cilium's agents write them.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time

import pytest
from click.testing import CliRunner
from conftest import wait_for
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from cilium_lab.cli import cli

CONTAINER = [{"name": "app", "image": "app"}]


def live(cluster, namespace: str, selector: str | None = None):
    return [
        p
        for p in cluster.core.list_namespaced_pod(namespace, label_selector=selector).items
        if not p.metadata.deletion_timestamp
    ]


def ready(pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def running(cluster, namespace: str, count: int):
    return wait_for(
        lambda: len([p for p in live(cluster, namespace) if ready(p) and p.status.pod_ip]) == count,
        f"{count} pods ready in {namespace}",
    )


def deployment(cluster, namespace, name, replicas):
    cluster.apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": CONTAINER},
                },
            },
        },
    )


def statefulset(cluster, namespace, name, replicas):
    cluster.apps.create_namespaced_stateful_set(
        namespace,
        {
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "serviceName": name,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": CONTAINER},
                },
            },
        },
    )


def budget(cluster, namespace, name, app, **rule):
    client.PolicyV1Api(cluster.api_client).create_namespaced_pod_disruption_budget(
        namespace,
        {"metadata": {"name": name}, "spec": {"selector": {"matchLabels": {"app": app}}, **rule}},
    )
    # The disruption controller counts the healthy pods before any eviction is judged.
    wait_for(
        lambda: (
            client.PolicyV1Api(cluster.api_client)
            .read_namespaced_pod_disruption_budget(name, namespace)
            .status.observed_generation
        ),
        f"PodDisruptionBudget {name} observed",
    )


def bare_pod(cluster, namespace, name, node=None, **metadata):
    spec = {"containers": CONTAINER}
    if node:
        spec["nodeName"] = node
    cluster.core.create_namespaced_pod(
        namespace, {"metadata": {"name": name, "labels": {"app": name}, **metadata}, "spec": spec}
    )


@pytest.fixture
def release(tmp_path, kubeconfig, helm_env, namespace):
    """``helm_release("install")`` installs the stand-in release; ``"upgrade"`` changes a value."""
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: cilium\nversion: 1.19.6\n")
    (chart / "templates" / "config.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cilium-config}\n"
        "data: {hubble: {{ .Values.hubble | quote }}}\n"
    )

    def helm_release(verb="install", hubble="true"):
        result = subprocess.run(
            [
                "helm", "upgrade", "--install", "cilium", str(chart), "--namespace", namespace,
                "--set", f"hubble={hubble}", "--kubeconfig", str(kubeconfig),
            ],
            env=helm_env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr

    return helm_release


def old_cni_lab(cluster, namespace, release):
    """Under the old CNI: a Deployment, a StatefulSet and a bare pod run; then the release is
    deployed, and a pod is created after it."""
    deployment(cluster, namespace, "web", 2)
    statefulset(cluster, namespace, "db", 1)
    bare_pod(cluster, namespace, "bare")
    running(cluster, namespace, 4)
    # creationTimestamp has whole seconds: the release comes strictly later.
    time.sleep(1.1)
    release()
    time.sleep(1.1)
    bare_pod(cluster, namespace, "late")
    running(cluster, namespace, 5)


def restart_pods(kubeconfig, namespace, *args):
    return CliRunner().invoke(
        cli, ["restart-pods", "--kubeconfig", str(kubeconfig), "--namespace", namespace, *args]
    )


def report(kubeconfig, namespace, *args):
    result = restart_pods(kubeconfig, namespace, "-o", "json", *args)
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    return {
        key: sorted(p["name"] for p in found[key] if p["namespace"] == namespace)
        for key in ("restart", "left", "evicted")
    }


def short(names):
    """web-5d9c-x2x -> web (a Deployment's pods have random names)."""
    return sorted(n.split("-")[0] if n.startswith("web-") else n for n in names)


def uids(cluster, namespace):
    return {p.metadata.name: p.metadata.uid for p in live(cluster, namespace)}


def test_before_the_release_every_pod_is_the_old_cnis(kubeconfig, cluster, namespace):
    """What --dry reads before the install: exactly what the run will restart after it."""
    deployment(cluster, namespace, "web", 2)
    bare_pod(cluster, namespace, "bare")
    running(cluster, namespace, 3)
    found = report(kubeconfig, namespace)
    assert short(found["restart"]) == ["web", "web"] and found["left"] == ["bare"]


def test_kwok_lab_pods_are_dated_by_helms_history(kubeconfig, cluster, namespace, release):
    """Created before the release's first deploy: the old CNI's. After: Cilium's, and a values
    change (a second revision) does not make them old."""
    old_cni_lab(cluster, namespace, release)
    before = uids(cluster, namespace)
    found = report(kubeconfig, namespace)
    assert short(found["restart"]) == ["db-0", "web", "web"]
    assert found["left"] == ["bare"] and found["evicted"] == []
    assert uids(cluster, namespace) == before  # listing changes nothing

    release(hubble="false")
    assert report(kubeconfig, namespace) == found


def test_yes_evicts_the_old_pods_and_their_controllers_recreate_them(
    kubeconfig, cluster, namespace, release
):
    old_cni_lab(cluster, namespace, release)
    before = uids(cluster, namespace)
    result = restart_pods(kubeconfig, namespace, "--yes", "--timeout", "60")
    assert result.exit_code == 0, result.output
    assert f"left: pod {namespace}/bare on " in result.stdout
    assert "no controller recreates it: delete and recreate it yourself" in result.stdout
    running(cluster, namespace, 5)
    after = uids(cluster, namespace)
    # Recreated: new pods (db-0 under the same name); the bare one and Cilium's late one stay.
    assert after["bare"] == before["bare"] and after["late"] == before["late"]
    assert after["db-0"] != before["db-0"]
    assert not {n for n in before if n.startswith("web-")} & set(after)

    again = report(kubeconfig, namespace, "--yes")
    assert again == {"restart": [], "left": ["bare"], "evicted": []}


def watch_ready(cluster, namespace, apps):
    """Follow the pods from now on; the returned stop() gives the fewest ready pods of each app
    seen at once in between."""
    listed = cluster.core.list_namespaced_pod(namespace)
    pods = {p.metadata.uid: p for p in listed.items}
    fewest = {}

    def count():
        for app in apps:
            now = sum(
                1
                for p in pods.values()
                if p.metadata.labels.get("app") == app
                and ready(p)
                and not p.metadata.deletion_timestamp
            )
            fewest[app] = min(fewest.get(app, now), now)

    count()
    stream = watch.Watch()

    stopping, broken = threading.Event(), []

    def follow():
        try:
            for event in stream.stream(
                cluster.core.list_namespaced_pod,
                namespace,
                resource_version=listed.metadata.resource_version,
                timeout_seconds=120,
            ):
                pod = event["object"]
                if event["type"] == "DELETED":
                    pods.pop(pod.metadata.uid, None)
                else:
                    pods[pod.metadata.uid] = pod
                count()
        except Exception as error:  # stop() closes the response under the read
            if not stopping.is_set():
                broken.append(error)

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()

    def stop():
        time.sleep(0.5)  # the last events are in
        stopping.set()
        stream.stop()
        thread.join(timeout=5)
        assert not broken, f"the watch broke before the end, events may be missing: {broken}"
        return fewest

    return stop


def test_one_pod_missing_at_a_time_with_a_budget_and_without(
    kubeconfig, cluster, namespace, release
):
    """A StatefulSet of 3 with a budget of maxUnavailable 1, and a Deployment of 3 without one:
    while the run evicts, each never has more than one replica missing."""
    statefulset(cluster, namespace, "db", 3)
    deployment(cluster, namespace, "web", 3)
    running(cluster, namespace, 6)
    budget(cluster, namespace, "db-budget", "db", maxUnavailable=1)
    time.sleep(1.1)
    release()
    stop = watch_ready(cluster, namespace, ["db", "web"])
    result = restart_pods(kubeconfig, namespace, "--yes", "--timeout", "60")
    running(cluster, namespace, 6)
    fewest = stop()
    assert result.exit_code == 0, result.output
    assert fewest == {"db": 2, "web": 2}, fewest
    evicted = [line for line in result.stderr.splitlines() if line.startswith("evicted pod")]
    assert len(evicted) == 6, result.stderr
    # A StatefulSet's pods go in turn (its controller makes db-N again before the next).
    assert [line.split()[2] for line in evicted if "/db-" in line] == [
        f"{namespace}/db-0",
        f"{namespace}/db-1",
        f"{namespace}/db-2",
    ]


def test_a_budget_that_never_allows_times_out_naming_it(kubeconfig, cluster, namespace, release):
    statefulset(cluster, namespace, "db", 2)
    running(cluster, namespace, 2)
    budget(cluster, namespace, "db-budget", "db", minAvailable=2)
    time.sleep(1.1)
    release()
    before = uids(cluster, namespace)
    started = time.monotonic()
    result = restart_pods(kubeconfig, namespace, "--yes", "--timeout", "7")
    assert result.exit_code == 1, result.output
    assert 7 <= time.monotonic() - started < 30
    assert (
        f"cilium-lab: pod {namespace}/db-0 on " in result.stderr
        and f"could not be evicted in 7s: PodDisruptionBudget {namespace}/db-budget "
        "(minAvailable 2: 2 healthy, 2 needed, 0 disruptions allowed) allows no eviction"
        in result.stderr
    ), result.stderr
    waits = [line for line in result.stderr.splitlines() if line.startswith("waiting for ")]
    assert waits and all(f"PodDisruptionBudget {namespace}/db-budget" in w for w in waits)
    assert uids(cluster, namespace) == before


def test_running_job_pods_and_completed_pods_are_left(kubeconfig, cluster, namespace, release):
    batch = client.BatchV1Api(cluster.api_client)
    batch.create_namespaced_job(
        namespace,
        {
            "metadata": {"name": "once"},
            "spec": {
                "backoffLimit": 0,
                "template": {"spec": {"restartPolicy": "Never", "containers": CONTAINER}},
            },
        },
    )
    deployment(cluster, namespace, "web", 1)
    bare_pod(cluster, namespace, "done")
    running(cluster, namespace, 3)
    # The pod of a Deployment evicted for node pressure, and one that finished: the kubelet's words.
    web = next(p for p in live(cluster, namespace) if p.metadata.name.startswith("web-"))
    not_ready = [{"type": "Ready", "status": "False"}]
    cluster.core.patch_namespaced_pod_status(
        web.metadata.name,
        namespace,
        {"status": {"phase": "Failed", "reason": "Evicted", "conditions": not_ready}},
    )
    cluster.core.patch_namespaced_pod_status(
        "done", namespace, {"status": {"phase": "Succeeded", "conditions": not_ready}}
    )
    running(cluster, namespace, 2)  # the Job's pod and web's replacement
    time.sleep(1.1)
    release()
    before = uids(cluster, namespace)
    result = restart_pods(kubeconfig, namespace, "--yes", "--timeout", "60", "-o", "json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    job_pod = next(p for p in found["left"] if p["name"].startswith("once-"))
    assert job_pod["action"] == "job" and job_pod["owner"] == "Job/once"
    assert "runs for Job/once: left to finish, not evicted" in job_pod["advice"]
    names = {p["name"] for p in found["restart"] + found["left"]}
    assert "done" not in names and web.metadata.name not in names
    assert before[job_pod["name"]] == uids(cluster, namespace)[job_pod["name"]]
    assert web.metadata.name in uids(cluster, namespace) and "done" in uids(cluster, namespace)


def test_a_mirror_pod_is_its_kubelets_to_restart(kubeconfig, cluster, namespace, release):
    node = cluster.core.read_node("worker0")
    bare_pod(
        cluster,
        namespace,
        "etcd-worker0",
        node="worker0",
        annotations={"kubernetes.io/config.mirror": "0123abcd"},
        ownerReferences=[
            {
                "apiVersion": "v1",
                "kind": "Node",
                "name": "worker0",
                "uid": node.metadata.uid,
                "controller": True,
            }
        ],
    )
    running(cluster, namespace, 1)
    time.sleep(1.1)
    release()
    result = restart_pods(kubeconfig, namespace, "--yes", "--timeout", "30")
    assert result.exit_code == 0, result.output
    line = next(x for x in result.stdout.splitlines() if "etcd-worker0" in x)
    assert (
        "is a static pod of the kubelet on worker0, which alone can restart it: on worker0, "
        "move its manifest out of the kubelet's staticPodPath directory"
    ) in line
    assert "recreate it yourself" not in line
    assert "etcd-worker0" in uids(cluster, namespace)


@pytest.fixture
def cilium_resources(cluster, ciliumnode_crd):
    """Cilium's CiliumEndpoint resource beside its CiliumNode one (Cilium's operator registers
    both on a real data plane), for this test only: without it the cluster is the kwok lab."""
    api = client.ApiextensionsV1Api(cluster.api_client)
    api.create_custom_resource_definition(
        {
            "metadata": {"name": "ciliumendpoints.cilium.io"},
            "spec": {
                "group": "cilium.io",
                "scope": "Namespaced",
                "names": {
                    "plural": "ciliumendpoints",
                    "singular": "ciliumendpoint",
                    "kind": "CiliumEndpoint",
                },
                "versions": [
                    {
                        "name": "v2",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                ],
            },
        }
    )
    wait_for(
        lambda: cluster.get("/apis/cilium.io/v2/ciliumendpoints") is not None,
        "the CiliumEndpoint resource served",
    )
    made = []
    yield made
    for node in made:
        cluster.custom.delete_cluster_custom_object("cilium.io", "v2", "ciliumnodes", node)
    api.delete_custom_resource_definition("ciliumendpoints.cilium.io")

    def gone():
        try:
            cluster.get("/apis/cilium.io/v2/ciliumendpoints")
        except ApiException as error:
            return error.status == 404
        return False

    wait_for(gone, "the CiliumEndpoint resource gone")


def test_on_a_real_data_plane_the_ciliumendpoint_says_whose_a_pod_is(
    kubeconfig, cluster, namespace, release, cilium_resources
):
    """Both pods are created after the release (the kwok lab's signal would call both Cilium's)
    and have addresses of worker0's Node CIDR, which Cilium's CiliumNode hands out too
    (ipam.mode=kubernetes): only the CiliumEndpoint tells them apart."""
    release()
    time.sleep(1.1)
    for name in ("with-endpoint", "without"):
        bare_pod(cluster, namespace, name, node="worker0")
    running(cluster, namespace, 2)
    ip = next(
        p for p in live(cluster, namespace) if p.metadata.name == "with-endpoint"
    ).status.pod_ip
    cluster.custom.create_namespaced_custom_object(
        "cilium.io",
        "v2",
        namespace,
        "ciliumendpoints",
        {
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumEndpoint",
            "metadata": {"name": "with-endpoint"},
            "status": {"networking": {"addressing": [{"ipv4": ip}], "node": "192.168.1.14"}},
        },
    )
    node_cidrs = cluster.core.read_node("worker0").spec.pod_cidrs
    cluster.custom.create_cluster_custom_object(
        "cilium.io",
        "v2",
        "ciliumnodes",
        {
            "apiVersion": "cilium.io/v2",
            "kind": "CiliumNode",
            "metadata": {"name": "worker0"},
            "spec": {"ipam": {"podCIDRs": node_cidrs}},
        },
    )
    cilium_resources.append("worker0")
    result = restart_pods(kubeconfig, namespace, "-o", "json")
    assert result.exit_code == 0, result.output
    found = [p for p in json.loads(result.stdout)["left"] if p["namespace"] == namespace]
    assert [(p["name"], p["reason"]) for p in found] == [
        (
            "without",
            f"no CiliumEndpoint, and Cilium's pod CIDRs on worker0 ({', '.join(node_cidrs)}) are "
            "the Node's own (ipam.mode=kubernetes), which the old CNI used too: the IP cannot tell",
        )
    ]

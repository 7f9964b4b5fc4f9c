"""The run's own state (deploys/support/run.py): one per pyinfra State, the preflight's verdict
computed once for every host, and one cluster read per local host, made for its data."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pyinfra.api.exceptions import DeployError

from deploys.support import preflight
from deploys.support.run import Run

DATA = {
    "cilium_release": "cilium",
    "cilium_values": {"k8sServiceHost": "kubernetes", "k8sServicePort": 6443},
    "cilium_values_overrides": {},
    "cilium_chart": "cilium/cilium",
    "cilium_chart_version": "1.19.6",
    "helm_repo_name": "cilium",
    "helm_repo_url": "https://helm.cilium.io/",
    "cilium_namespace": "kube-system",
    "kubeconfig": "/k/config",
    "kube_context": None,
    "helm_extra_args": ["--create-namespace"],
    "cilium_release_takeover": False,
}


def local_host(name="@local", **data):
    return SimpleNamespace(
        name=name, groups=["local"], data=SimpleNamespace(get={**DATA, **data}.get)
    )


class State:
    pass


def test_one_run_per_state():
    state, other = State(), State()
    assert Run.of(state) is Run.of(state)
    assert Run.of(other) is not Run.of(state)
    assert Run.of(state).state is state


def test_one_cluster_read_per_local_host_for_its_release():
    run = Run.of(State())
    read = run.cluster_read(local_host())
    assert run.cluster_read(local_host()) is read
    assert run.cluster_read(local_host("@local2")) is not read
    assert read.args == {
        "release": "cilium",
        "values": DATA["cilium_values"],
        "chart": "cilium/cilium",
        "version": "1.19.6",
        "repo_name": "cilium",
        "repo_url": "https://helm.cilium.io/",
        "namespace": "kube-system",
        "kubeconfig": "/k/config",
        "context": None,
        "extra_args": ["--create-namespace"],
        "takeover": False,
    }
    # pyinfra prints a failed fact's arguments: the values show as their count of keys.
    assert str(read.args["values"]) == "<cilium_values: 2 keys>"


def test_a_labs_overrides_are_merged_into_the_chapters_values_key_by_key():
    chapter = {"k8sServiceHost": "kubernetes", "cgroup": {"hostRoot": "/sys/fs/cgroup"}}
    lab = {"cgroup": {"autoMount": {"enabled": False}}, "image": {"override": "reg/cilium:v1"}}
    read = Run.of(State()).cluster_read(
        local_host(cilium_values=chapter, cilium_values_overrides=lab)
    )
    assert read.args["values"] == {
        "k8sServiceHost": "kubernetes",
        "cgroup": {"hostRoot": "/sys/fs/cgroup", "autoMount": {"enabled": False}},
        "image": {"override": "reg/cilium:v1"},
    }
    assert chapter == {"k8sServiceHost": "kubernetes", "cgroup": {"hostRoot": "/sys/fs/cgroup"}}


def test_overrides_that_are_not_a_mapping_are_one_line():
    with pytest.raises(DeployError, match=r"^\[@local\] cilium_values_overrides is a list"):
        Run.of(State()).cluster_read(local_host(cilium_values_overrides=["image"]))


@pytest.mark.parametrize(("verdict", "refused"), [({}, False), ({"worker0": ["no room"]}, True)])
def test_the_verdict_is_computed_once_and_every_host_gets_it(monkeypatch, verdict, refused):
    computed = []
    monkeypatch.setattr(
        preflight, "_verdict", lambda run, *checks, **options: computed.append(run) or verdict
    )
    run = Run.of(State())
    for _ in range(3):  # the deploy file's pass for each of three hosts
        if refused:
            with pytest.raises(
                DeployError, match="preflight failed on worker0; nothing was changed"
            ):
                preflight.require(run)
        else:
            preflight.require(run)
    assert computed == [run]
    assert run.verdict == verdict

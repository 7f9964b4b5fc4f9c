"""An unreadable kubeconfig is one line naming the file (kube.load, no API server), and a failed
check in the preflight never reaches pyinfra's "continue?" prompt (its real State)."""

from __future__ import annotations

import pytest
from pyinfra.api import Config, Inventory, State

from cilium_lab.cluster import ClusterError, kube
from deploys.support import preflight


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"\x7fELF\x02\x01\x01\x00\xd0\xff", "is not a text file (not UTF-8)"),
        (b"clusters: [\n", "cannot be read as YAML"),
        (b"- a\n- b\n", "is invalid: it defines no clusters"),
        (b"", "is invalid: it defines no clusters"),
        (b"apiVersion: v1\nclusters:\n- name: c\n", "is invalid: Invalid kube-config file"),
        (b"apiVersion: v1\nclusters: 5\n", "is invalid: TypeError"),
        (None, "is a directory, not a file"),
    ],
    ids=["binary", "bad_yaml", "a_list", "empty", "missing_keys", "wrong_types", "directory"],
)
def test_an_unreadable_kubeconfig_is_one_line_naming_the_file(tmp_path, content, expected):
    path = tmp_path / "config"
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    with pytest.raises(ClusterError) as error:
        kube.load(str(path))
    assert str(error.value).startswith(f"kubeconfig {path} ")
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_a_failed_host_in_the_preflight_does_not_prompt():
    """Without -y, pyinfra's CLI sets FAIL_PERCENT to 0 and a prompt that reads stdin."""
    inventory = Inventory((["@local", "node0", "node1"], {}))
    state = State(inventory, Config(FAIL_PERCENT=0))
    prompted = []
    state.should_raise_failed_hosts = lambda state: prompted.append(1) or False
    hosts = list(inventory)
    for host in hosts:
        state.activate_host(host)

    with preflight._failures_left_to_the_verdict(state):
        state.fail_hosts({hosts[0]})
    assert prompted == [] and hosts[0] in state.failed_hosts
    assert state.config.FAIL_PERCENT == 0
    # Outside the preflight pyinfra's own rule holds again.
    state.fail_hosts({hosts[1]})
    assert prompted == [1]

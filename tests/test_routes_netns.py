"""The workstation's routes to the pod CIDRs, removed and restored for real by pyinfra on
``@local``, inside a network namespace this test creates: the machine's own routing table is
never touched.

Needs root (for ``ip netns``) and iproute2.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from netns_helpers import delete_netns, in_ns, new_netns
from pyinfra.api import Inventory
from pyinfra.api.exceptions import DeployError

from deploys.support.data import pod_routes

REPO = Path(__file__).resolve().parents[1]
PYINFRA = Path(sys.executable).parent / "pyinfra"
DEPLOY = REPO / "tests" / "deploys" / "routes.py"

# The guide's routes for two nodes, as LAB.md gives them.
GUIDE = {"10.1.0.0/16": "192.168.1.11", "10.2.0.0/16": "192.168.1.12"}


@pytest.fixture
def netns():
    name = new_netns()
    try:
        # The workstation's side of the lab network (veth: this kernel has no dummy links), and a route to a pod CIDR that is not the guide's.
        for command in (
            "ip link add lab0 type veth peer name lab0p",
            "ip link set lab0p up",
            "ip addr add 192.168.1.1/24 dev lab0",
            "ip link set lab0 up",
            "ip link add vpn0 type veth peer name vpn0p",
            "ip link set vpn0p up",
            "ip addr add 10.8.0.2/24 dev vpn0",
            "ip link set vpn0 up",
        ):
            in_ns(name, command)
        yield name
    finally:
        delete_netns(name)


def routes(netns) -> set[str]:
    return {line.strip() for line in in_ns(netns, "ip -4 route show").splitlines()}


def pyinfra_local(netns, tmp_path, want, routes):
    inventory = tmp_path / f"inventory_{want}.py"
    inventory.write_text(f"local = [('@local', {{'want': {want!r}, 'routes': {routes!r}}})]\n")
    proc = subprocess.run(
        ["ip", "netns", "exec", netns, str(PYINFRA), "-y", "--json", str(inventory), str(DEPLOY)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    (operation,) = report["results"]["operations"]
    return bool(operation["success"]), proc.stderr


@pytest.mark.netns
@pytest.mark.skipif(not PYINFRA.exists(), reason="needs pyinfra installed beside this Python")
def test_routes_to_pod_cidrs_removed_then_restored(netns, tmp_path):
    in_ns(netns, "ip route add 10.1.0.0/16 via 192.168.1.11")
    in_ns(netns, "ip route add 10.2.0.0/16 via 192.168.1.12")
    in_ns(netns, "ip route add 10.3.0.0/16 via 10.8.0.1")
    others = {r for r in routes(netns) if not r.startswith(("10.1.", "10.2."))}
    wanted = {**GUIDE, "10.3.0.0/16": "192.168.1.13"}

    changed, log = pyinfra_local(netns, tmp_path, "absent", wanted)
    assert changed
    assert routes(netns) == others
    # A route to a pod CIDR through another gateway is someone else's: kept, and said.
    assert "10.3.0.0/16 via 10.8.0.1 dev vpn0" in routes(netns)
    assert "goes via 10.8.0.1, not 192.168.1.13" in log

    changed, _ = pyinfra_local(netns, tmp_path, "absent", wanted)
    assert not changed

    changed, _ = pyinfra_local(netns, tmp_path, "present", GUIDE)
    assert changed
    assert routes(netns) == others | {
        "10.1.0.0/16 via 192.168.1.11 dev lab0",
        "10.2.0.0/16 via 192.168.1.12 dev lab0",
    }

    changed, _ = pyinfra_local(netns, tmp_path, "present", GUIDE)
    assert not changed


def lab(nodes, local=True):
    groups = {"nodes": (nodes, {})}
    if local:
        groups["local"] = (["@local"], {})
    names = [n[0] if isinstance(n, tuple) else n for n in nodes] + (["@local"] if local else [])
    return Inventory((names, {}), **groups)


def test_pod_routes_come_from_each_nodes_data():
    inventory = lab(
        [
            ("control0", {"ssh_hostname": "192.168.1.11", "pod_cidr": "10.1.0.0/16"}),
            (
                "worker0",
                {
                    "ssh_hostname": "worker0.lab",
                    "pod_route_via": "192.168.1.14",
                    "pod_cidr": "10.4.0.0/16",
                },
            ),
            ("gateway", {"ssh_hostname": "192.168.1.10"}),
        ]
    )
    assert pod_routes(inventory) == {"10.1.0.0/16": "192.168.1.11", "10.4.0.0/16": "192.168.1.14"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"ssh_hostname": "192.168.1.11", "pod_cidr": "10.1.0.0/33"},
            "[control0] pod_cidr '10.1.0.0/33' is not an IPv4 network",
        ),
        (
            {"ssh_hostname": "control0.lab", "pod_cidr": "10.1.0.0/16"},
            "[control0] the route to its pod CIDR would go via 'control0.lab'",
        ),
    ],
)
def test_bad_route_data_names_the_node(data, message):
    with pytest.raises(DeployError) as error:
        pod_routes(lab([("control0", data)]))
    assert str(error.value).startswith(message)
    assert "inventory" in str(error.value)

"""What Cilium's agent leaves once uninstalled, removed for real inside a network namespace this
test creates: its CILIUM_* chains and jumps, its devices, its pins (in a directory standing in
for the bpffs) and its state directory go; other chains, devices and files stay.

Needs root (for ``ip netns``) and iptables; the machine's own tables are never touched.
"""

import shutil

import pytest
from netns_helpers import in_ns
from pyinfra_fixtures import command_text, run_fact, run_operation

from facts.cilium_leftovers import CiliumLeftovers
from operations.cilium_leftovers import cilium_leftovers_absent

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(not shutil.which("iptables-save"), reason="needs iptables"),
]

# As Cilium 1.19.6's agent leaves them (iptables-save of a real node), beside someone else's.
CILIUM_LIKE = [
    "iptables -N CILIUM_FORWARD",
    "iptables -A FORWARD -m comment --comment 'cilium-feeder: CILIUM_FORWARD' -j CILIUM_FORWARD",
    "iptables -A CILIUM_FORWARD -o cilium_host -m comment --comment 'cilium: any->cluster on cilium_host forward accept' -j ACCEPT",
    "iptables -t nat -N CILIUM_POST_nat",
    "iptables -t nat -A POSTROUTING -m comment --comment 'cilium-feeder: CILIUM_POST_nat' -j CILIUM_POST_nat",
    "iptables -t raw -N CILIUM_PRE_raw",
    "iptables -t raw -A PREROUTING -m comment --comment 'cilium-feeder: CILIUM_PRE_raw' -j CILIUM_PRE_raw",
    "iptables -t raw -A CILIUM_PRE_raw -m mark --mark 0x200/0xf00 -j CT --notrack",
]
OTHERS = [
    "iptables -N KUBE-FIREWALL",
    "iptables -I INPUT -j KUBE-FIREWALL",
    "iptables -t nat -N KUBE-SERVICES",
    "iptables -t nat -A PREROUTING -j KUBE-SERVICES",
    "iptables -A INPUT -p tcp --dport 22 -j ACCEPT",
]
# veth pairs and bridges (this kernel has no dummy module); an endpoint's peer would be in its
# pod's namespace, and goes with it.
LINKS = [
    "ip link add cilium_host type veth peer name cilium_net",
    "ip link add cilium_vxlan type veth peer name vxlan-peer",
    "ip link add lxc95b1be7afe0e type veth peer name pod-eth0",
    # Not Cilium's: a bridge of LXC's and the old CNI's bridge.
    "ip link add lxcbr0 type bridge",
    "ip link add cnio0 type bridge",
]


def read(netns, args):
    output = in_ns(netns, command_text(CiliumLeftovers().command(**args)))
    found = run_fact(CiliumLeftovers, output.splitlines())
    # /proc is this machine's: an agent of a lab running here is no agent of this namespace.
    found["agent_running"] = False
    return found


def links(netns):
    return sorted(
        line.split(": ")[1].split("@")[0] for line in in_ns(netns, "ip -o link show").splitlines()
    )


def test_removes_ciliums_leftovers_and_keeps_the_rest(netns, tmp_path):
    bpffs = tmp_path / "bpf"
    (bpffs / "cilium/devices/host0/links").mkdir(parents=True)
    (bpffs / "cilium/devices/host0/links/cil_from_netdev").write_text("")
    (bpffs / "tc/globals").mkdir(parents=True)
    (bpffs / "tc/globals/cilium_lxc").write_text("")
    (bpffs / "tc/globals/someone_elses_map").write_text("")
    (bpffs / "maps.debug").write_text("")
    state = tmp_path / "run/cilium"
    (state / "state").mkdir(parents=True)
    args = dict(bpffs_root=str(bpffs), state_dirs=(str(state), str(tmp_path / "lib/cilium")))

    for command in OTHERS + CILIUM_LIKE + LINKS:
        in_ns(netns, command)
    before = in_ns(netns, "iptables-save")

    found = read(netns, args)
    assert found["iptables"] == {"filter": 3, "nat": 2, "raw": 3}
    assert found["links"] == ["cilium_host", "cilium_net", "cilium_vxlan", "lxc95b1be7afe0e"]
    assert found["pins"] == [f"{bpffs}/cilium", f"{bpffs}/tc/globals/cilium_lxc"]
    assert found["dirs"] == [str(state)]

    commands, _ = run_operation(cilium_leftovers_absent, {CiliumLeftovers: found}, **args)
    assert commands[0].startswith("! grep -qsx cilium-agent /proc/")
    for command in commands[1:]:
        in_ns(netns, command)

    def strip(text):
        return [line for line in text.splitlines() if not line.startswith("#")]

    after = in_ns(netns, "iptables-save")
    # Exactly Cilium's lines went, nothing else (counters and comments aside).
    assert strip(after) == [line for line in strip(before) if "CILIUM_" not in line]
    assert "-A INPUT -j KUBE-FIREWALL" in after
    assert links(netns) == ["cnio0", "lo", "lxcbr0"]
    assert sorted(p.name for p in bpffs.iterdir()) == ["maps.debug", "tc"]
    assert [p.name for p in (bpffs / "tc/globals").iterdir()] == ["someone_elses_map"]
    assert not state.exists()

    # Converged: the fact sees nothing and the operation yields nothing.
    found = read(netns, args)
    commands, host = run_operation(cilium_leftovers_absent, {CiliumLeftovers: found}, **args)
    assert commands == []
    assert host.noops == ["nothing of Cilium's agent left on the node"]

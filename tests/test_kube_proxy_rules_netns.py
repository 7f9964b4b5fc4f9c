"""kube-proxy's iptables leftovers, removed for real inside a network namespace this test creates.

Needs root (for ``ip netns``) and iptables; the machine's own tables are never touched.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from netns_helpers import in_ns
from pyinfra_fixtures import command_text, run_fact, run_operation

from facts.kube_proxy_rules import KubeProxyRules
from operations.kube_proxy_rules import kube_proxy_rules_absent

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(not shutil.which("iptables-save"), reason="needs iptables"),
]

# What kube-proxy in iptables mode leaves, beside a rule and a chain of someone else's.
KUBE_PROXY_LIKE = [
    "iptables -t nat -N KUBE-SERVICES",
    "iptables -t nat -N KUBE-POSTROUTING",
    "iptables -t nat -A PREROUTING -m comment --comment 'kubernetes service portals' -j KUBE-SERVICES",
    "iptables -t nat -A POSTROUTING -j KUBE-POSTROUTING",
    "iptables -t nat -A KUBE-POSTROUTING -j MASQUERADE",
    "iptables -N KUBE-FORWARD",
    "iptables -A FORWARD -j KUBE-FORWARD",
    "iptables -N OTHER-CHAIN",
    "iptables -A INPUT -p tcp --dport 22 -j OTHER-CHAIN",
    "iptables -t nat -A POSTROUTING -s 10.0.0.0/8 -j RETURN",
]
# What the kubelet writes for itself (Kubernetes 1.34): it must stay.
KUBELET_OWN = [
    "iptables -t mangle -N KUBE-IPTABLES-HINT",
    "iptables -t mangle -N KUBE-KUBELET-CANARY",
    "iptables -t nat -N KUBE-KUBELET-CANARY",
    "iptables -N KUBE-KUBELET-CANARY",
    "iptables -N KUBE-FIREWALL",
    "iptables -I INPUT -j KUBE-FIREWALL",
    "iptables -I OUTPUT -j KUBE-FIREWALL",
    "iptables -A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment 'block incoming"
    " localnet connections' -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP",
]
KUBELET_CHAIN = re.compile(r"KUBE-(IPTABLES-HINT|FIREWALL|KUBELET-CANARY)\b")


def read_rules(netns):
    return run_fact(
        KubeProxyRules, in_ns(netns, command_text(KubeProxyRules().command())).splitlines()
    )


def test_removes_kube_proxy_chains_and_keeps_the_kubelets_and_the_rest(netns):
    for command in KUBELET_OWN + KUBE_PROXY_LIKE:
        in_ns(netns, command)
    before = in_ns(netns, "iptables-save")

    rules = read_rules(netns)
    assert rules["iptables"] == {"nat": 5, "filter": 2}

    commands, _ = run_operation(kube_proxy_rules_absent, {KubeProxyRules: rules})
    for command in commands:
        in_ns(netns, command)

    after = in_ns(netns, "iptables-save")
    assert [
        line for line in after.splitlines() if "KUBE-" in line and not KUBELET_CHAIN.search(line)
    ] == []
    assert "-A INPUT -j KUBE-FIREWALL" in after
    assert ":KUBE-IPTABLES-HINT - [0:0]" in after
    assert "-A INPUT -p tcp -m tcp --dport 22 -j OTHER-CHAIN" in after
    assert "-A POSTROUTING -s 10.0.0.0/8 -j RETURN" in after

    def strip(text):
        return [line for line in text.splitlines() if not line.startswith("#")]

    # Exactly kube-proxy's lines went, nothing else (counters and comments aside).
    assert strip(after) == [
        line for line in strip(before) if "KUBE-" not in line or KUBELET_CHAIN.search(line)
    ]

    # Converged: the fact sees nothing and the operation yields nothing.
    rules = read_rules(netns)
    assert rules["iptables"] == {}
    commands, host = run_operation(kube_proxy_rules_absent, {KubeProxyRules: rules})
    assert commands == []
    assert host.noops == ["no kube-proxy rules left"]


# iptables-save of a node of the simulated lab's real data plane before the migration: the real
# kubelet and kube-proxy 1.34.4 (iptables mode) with the guide's configuration, the bridge
# plugin's masquerade chains, the guide's CoreDNS, nginx and the NodePort Service.
REAL_NODE = (
    Path(__file__).parent / "fixtures" / "iptables" / "real-node-kubelet-kube-proxy-1.34.4.rules"
)


def test_on_a_real_nodes_rules_only_kube_proxys_lines_go(netns):
    # kube-proxy counts dropped packets in nfacct objects it makes over netlink, which a
    # namespace of this test's has not got and iptables-restore cannot make: those rules (in
    # kube-proxy's own chains, which go as a whole) are left out.
    captured = REAL_NODE.read_text().splitlines()
    counting = [line for line in captured if "-m nfacct" in line]
    assert counting and all(line.startswith("-A KUBE-") for line in counting)
    saved = "\n".join(line for line in captured if line not in counting)
    subprocess.run(
        ["ip", "netns", "exec", netns, "iptables-restore"],
        input=saved + "\n",
        text=True,
        check=True,
    )
    before = in_ns(netns, "iptables-save")

    commands, _ = run_operation(kube_proxy_rules_absent, {KubeProxyRules: read_rules(netns)})
    assert commands
    for command in commands:
        in_ns(netns, command)
    after = in_ns(netns, "iptables-save")

    def lines(text):
        return [line.split(" [", 1)[0] for line in text.splitlines() if not line.startswith("#")]

    kept = [line for line in lines(before) if "KUBE-" not in line or KUBELET_CHAIN.search(line)]
    assert lines(after) == kept
    # What the kubelet checks every minute is there, and the bridge plugin's chains too.
    for line in (":KUBE-IPTABLES-HINT -", ":KUBE-KUBELET-CANARY -", "-A INPUT -j KUBE-FIREWALL"):
        assert any(kept_line.startswith(line) for kept_line in lines(after)), line
    assert any(line.startswith(":CNI-") for line in lines(after))
    assert not [
        line
        for line in lines(after)
        if re.search(r"KUBE-(SVC|SEP|EXT|SERVICES|NODEPORTS|PROXY)", line)
    ]

    rules = read_rules(netns)
    assert rules["iptables"] == {}
    assert run_operation(kube_proxy_rules_absent, {KubeProxyRules: rules})[0] == []

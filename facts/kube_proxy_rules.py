"""
What kube-proxy leaves behind in the kernel once it is stopped.
"""

from __future__ import annotations

from pyinfra.api import FactBase

# Every chain kube-proxy creates is named KUBE-…, but so are three of the kubelet's own
# (Kubernetes 1.34, pkg/kubelet/kubelet_network_linux.go): the hint chain other tools read to
# tell iptables-legacy from -nft, the firewall that drops martian packets to 127.0.0.0/8 (jumped
# to from INPUT and OUTPUT; kube-proxy writes a copy of the same chain), and the canary the
# kubelet checks every minute to write the rest back. They stay: removing them weakens the node
# until the kubelet notices, and a running kubelet would make every re-run report a change.
CHAIN_PREFIX = "KUBE-"
KUBELET_CHAINS = ("KUBE-IPTABLES-HINT", "KUBE-FIREWALL", "KUBE-KUBELET-CANARY")
# In IPVS mode kube-proxy also binds service addresses to this dummy interface.
IPVS_INTERFACE = "kube-ipvs0"

# awk: proxy() is true for an iptables-save line that names a KUBE-* chain other than the
# kubelet's (a chain's declaration, a rule in it, or a jump to it). Chain names are upper case,
# digits and dashes; kube-proxy's comments are lower case, so a comment never looks like one.
PROXY_LINE_AWK = (
    "function proxy(s,  c) { "
    "while (match(s, /KUBE-[A-Z0-9-]+/)) { "
    "c = substr(s, RSTART, RLENGTH); s = substr(s, RSTART + RLENGTH); "
    "if (!(c in kubelet)) return 1 } "
    "return 0 } "
    "BEGIN { " + " ".join(f'kubelet["{c}"];' for c in KUBELET_CHAINS) + " } "
)


class KubeProxyRules(FactBase):
    """
    Returns how many rule and chain lines name kube-proxy's ``KUBE-*`` chains, per
    ``iptables`` family and table, and whether IPVS state of kube-proxy is present.

    The kubelet's own chains (``KUBE-IPTABLES-HINT``, ``KUBE-FIREWALL``,
    ``KUBE-KUBELET-CANARY``) are not counted. Tables without kube-proxy's lines are left out; a
    node without ``iptables-save`` reports none.

    .. code:: python

        {
            "iptables": {"nat": 42, "filter": 9},
            "ip6tables": {},
            "ipvs_interface": False,
            "ipvs_services": 0,
        }
    """

    @staticmethod
    def default():
        return {"iptables": {}, "ip6tables": {}, "ipvs_interface": False, "ipvs_services": 0}

    def command(self):
        # iptables-save prints "*table" before each table's lines.
        count = (
            f'awk -v f="$family" \'{PROXY_LINE_AWK}'
            "/^\\*/ {t = substr($0, 2)} proxy($0) {n[t]++} "
            "END {for (t in n) print f, t, n[t]}'"
        )
        return (
            "for family in iptables ip6tables; do "
            'command -v "$family-save" >/dev/null 2>&1 || continue; '
            f'"$family-save" 2>/dev/null | {count}; '
            "done; "
            f"ip link show {IPVS_INTERFACE} >/dev/null 2>&1 && echo ipvs_interface; "
            # /proc/net/ip_vs lists one "TCP|UDP|SCTP addr:port" line per virtual service.
            "[ -r /proc/net/ip_vs ] && "
            "echo \"ipvs_services $(grep -cE '^(TCP|UDP|SCTP)' /proc/net/ip_vs)\"; "
            "true"
        )

    def process(self, output):
        state = self.default()
        for line in output:
            words = line.split()
            if words[0] in ("iptables", "ip6tables") and len(words) == 3:
                state[words[0]][words[1]] = int(words[2])
            elif words[0] == "ipvs_interface":
                state["ipvs_interface"] = True
            elif words[0] == "ipvs_services":
                state["ipvs_services"] = int(words[1])
        return state

"""
What kube-proxy leaves behind in the kernel once it is stopped.
"""

from __future__ import annotations

from pyinfra.api import FactBase

# kube-proxy names every chain it creates KUBE-…; nothing else on a node of the guide does.
CHAIN_PREFIX = "KUBE-"
# In IPVS mode kube-proxy also binds service addresses to this dummy interface.
IPVS_INTERFACE = "kube-ipvs0"


class KubeProxyRules(FactBase):
    """
    Returns how many rule and chain lines mention kube-proxy's ``KUBE-*`` chains, per
    ``iptables`` family and table, and whether IPVS state of kube-proxy is present.

    Tables without such lines are left out; a node without ``iptables-save`` reports none.

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
            'awk -v f="$family" \'/^\\*/ {t = substr($0, 2)} '
            f"/{CHAIN_PREFIX}/ {{n[t]++}} END {{for (t in n) print f, t, n[t]}}'"
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

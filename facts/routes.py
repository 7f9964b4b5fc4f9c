"""
The IPv4 routes of a machine's main routing table, on Linux and macOS.
"""

from __future__ import annotations

import ipaddress

from pyinfra.api import FactBase


def normalize_destination(destination: str) -> str | None:
    """A destination as ``ip route`` or BSD ``netstat -rn`` prints it, as a network in CIDR form.

    ``netstat`` drops trailing zero octets: ``10.1/16`` is ``10.1.0.0/16``, and a destination
    without a prefix length has one octet of prefix per octet written (``192.168.1`` is
    ``192.168.1.0/24``; four octets is a host). Anything else (link-local scopes such as
    ``fe80::%lo0``, ``link#4``) gives None.
    """
    if destination == "default":
        return "0.0.0.0/0"
    address, slash, length = destination.partition("/")
    octets = address.split(".")
    if not 1 <= len(octets) <= 4 or not all(octet.isdigit() for octet in octets):
        return None
    prefix = int(length) if slash and length.isdigit() else 8 * len(octets)
    try:
        network = ipaddress.IPv4Network(
            f"{'.'.join(octets + ['0'] * (4 - len(octets)))}/{prefix}", strict=False
        )
    except ValueError:
        return None
    return str(network)


def _gateway(value: str) -> str | None:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        # netstat names interface routes by their link ("link#20") or MAC address.
        return None


class HostRoutes(FactBase):
    """
    Returns the operating system (``uname -s``) and the IPv4 routes of the main routing table:
    destination network (CIDR) to gateway address, or None for a route straight out of an
    interface. Linux is read with ``ip -4 route show``, macOS with ``netstat -rn -f inet``.

    .. code:: python

        {
            "system": "Linux",
            "routes": {
                "0.0.0.0/0": "192.168.0.1",
                "10.1.0.0/16": "192.168.1.11",
                "192.168.1.0/24": None,
            },
        }
    """

    @staticmethod
    def default():
        return {"system": "", "routes": {}}

    def command(self):
        return (
            's=$(uname -s); echo "system=$s"; '
            'if [ "$s" = Darwin ]; then netstat -rn -f inet; else ip -4 route show; fi'
        )

    def process(self, output):
        state = self.default()
        lines = iter(output)
        for line in lines:
            if line.startswith("system="):
                state["system"] = line.partition("=")[2].strip()
                break
        for line in lines:
            words = line.split()
            if not words:
                continue
            if state["system"] == "Darwin":
                # "Destination Gateway Flags Netif Expire"; headers and titles do not parse.
                destination = normalize_destination(words[0])
                gateway = _gateway(words[1]) if len(words) > 1 else None
            else:
                # "10.1.0.0/16 via 192.168.1.11 dev br0 ..." or "192.168.1.0/24 dev br0 ...";
                # typed routes ("blackhole 10.9.0.0/16", "unreachable …") carry no gateway.
                if words[0] in (
                    "blackhole",
                    "unreachable",
                    "prohibit",
                    "throw",
                    "local",
                    "broadcast",
                ):
                    words = words[1:] or [""]
                destination = normalize_destination(words[0])
                gateway = _gateway(words[words.index("via") + 1]) if "via" in words[:-1] else None
            if destination is not None:
                # The first route wins, as the kernel prefers it at equal metric.
                state["routes"].setdefault(destination, gateway)
        return state

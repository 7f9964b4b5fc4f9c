"""
Faster round trips on pyinfra's SSH connections.

paramiko leaves Nagle's algorithm on, so each small command waits on a delayed ACK: about 40 ms
per remote command (benchmarks/PROFILE.md), most of a no-change re-run's time on the nodes.
pyinfra has no setting for it, and every host is connected before a deploy file runs, so the
deploy switches it off on the open sockets.
"""

from __future__ import annotations

import socket


def no_delay(state) -> None:
    """Set ``TCP_NODELAY`` on the SSH socket of every connected host of the run."""
    for host in state.inventory.get_active_hosts():
        client = getattr(host.connector, "client", None)
        transport = client.get_transport() if client is not None else None
        sock = getattr(transport, "sock", None)
        # A ProxyCommand or jump host gives no TCP socket here: nothing to tune.
        if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

"""TCP_NODELAY on the SSH sockets of a run's hosts (deploys/support/ssh.py), on real loopback sockets."""

import socket
from types import SimpleNamespace

from deploys.support.ssh import no_delay


def host_with(sock):
    transport = SimpleNamespace(sock=sock)
    client = SimpleNamespace(get_transport=lambda: transport)
    return SimpleNamespace(connector=SimpleNamespace(client=client))


def test_sets_no_delay_on_tcp_sockets_only():
    listener = socket.create_server(("127.0.0.1", 0))
    tcp = socket.create_connection(listener.getsockname())
    unix, _ = socket.socketpair()
    local = SimpleNamespace(connector=SimpleNamespace())  # @local: no SSH client at all
    state = SimpleNamespace(
        inventory=SimpleNamespace(get_active_hosts=lambda: [host_with(tcp), host_with(unix), local])
    )
    try:
        assert tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        no_delay(state)
        assert tcp.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        for s in (listener, tcp, unix, _):
            s.close()

"""
What a node must offer before the migration may touch it.
"""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase


class NodePreflight(FactBase):
    """
    Returns, in one command, what the migration needs from a node: that the command ran as
    root (so sudo works), that systemd is PID 1, the kernel release, the file system type at the
    cgroup root Cilium will use, and whether the API server's name resolves and its port answers
    from the node (without kube-proxy, Cilium's agents reach the API server only that way).

    + service_host: the name Cilium's agents use for the API server (``k8sServiceHost``)
    + service_port: its port (``k8sServicePort``)
    + cgroup_root: the cgroup v2 mount Cilium uses (``cgroup.hostRoot``)

    .. code:: python

        {
            "root": True,
            "systemd": True,
            "kernel": "5.15.0-83-generic",
            "cgroup_fs": "cgroup2fs",
            "resolves": True,
            "reachable": True,
        }
    """

    @staticmethod
    def default():
        # What a node that could not be asked looks like: every check fails.
        return {
            "root": False,
            "systemd": False,
            "kernel": "",
            "cgroup_fs": "",
            "resolves": False,
            "reachable": False,
        }

    def command(self, service_host: str, service_port: int, cgroup_root: str):
        name, port = shlex.quote(service_host), int(service_port)
        tcp = shlex.quote(f"</dev/tcp/{service_host}/{port}")
        return (
            'echo "uid=$(id -u)"; '
            "[ -d /run/systemd/system ] && echo systemd=yes; "
            'echo "kernel=$(uname -r)"; '
            f'echo "cgroup_fs=$(stat -fc %T {shlex.quote(cgroup_root)} 2>/dev/null)"; '
            f"getent hosts {name} >/dev/null 2>&1 && echo resolves=yes; "
            f"timeout 3 bash -c {tcp} >/dev/null 2>&1 && echo reachable=yes; "
            "true"
        )

    def process(self, output):
        values = dict(line.strip().partition("=")[::2] for line in output)
        return {
            "root": values.get("uid") == "0",
            "systemd": values.get("systemd") == "yes",
            "kernel": values.get("kernel", ""),
            "cgroup_fs": values.get("cgroup_fs", ""),
            "resolves": values.get("resolves") == "yes",
            "reachable": values.get("reachable") == "yes",
        }

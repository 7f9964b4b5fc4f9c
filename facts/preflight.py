"""
What a node must offer before the migration may touch it.
"""

from __future__ import annotations

from pyinfra.api import FactBase

from facts.shell import script_command


class NodePreflight(FactBase):
    """
    Returns, in one command, what the migration needs from a node: who the SSH user is and
    whether sudo works without a password, that systemd is PID 1, the kernel release, the file
    system type at the cgroup root Cilium will use, the addresses the API server's name
    resolves to and whether its port answers from the node (without kube-proxy, Cilium's agents
    reach the API server only that way), whether the CNI directory exists and how much it
    holds, and, for each backup directory, the room on its file system.

    It runs as the SSH user, without sudo: a sudo that asks for a password is reported here
    instead of prompting (pyinfra would ask for it on a terminal, and fail without one).

    + service_host: the name Cilium's agents use for the API server (``k8sServiceHost``)
    + service_port: its port (``k8sServicePort``)
    + cgroup_root: the cgroup v2 mount Cilium uses (``cgroup.hostRoot``)
    + conf_dir: the CNI configuration directory
    + backup_dirs: the directories the migration writes its backups and records to; each is
      measured at its nearest existing ancestor (it may not exist yet); ``room`` lists them in
      the order given

    .. code:: python

        {
            "root": False,
            "sudo": True,
            "systemd": True,
            "kernel": "5.15.0-83-generic",
            "cgroup_fs": "cgroup2fs",
            "addresses": ["192.168.1.10"],
            "resolves": True,
            "reachable": True,
            "conf_dir": True,
            "conf_kib": 8,
            "room": [{"free_kib": 1048576, "read_only": False}],
        }
    """

    @staticmethod
    def default():
        # What a node that could not be asked looks like: every check fails.
        return {
            "root": False,
            "sudo": False,
            "systemd": False,
            "kernel": "",
            "cgroup_fs": "",
            "addresses": [],
            "resolves": False,
            "reachable": False,
            "conf_dir": False,
            "conf_kib": 0,
            "room": [],
        }

    def command(
        self,
        service_host: str,
        service_port: int,
        cgroup_root: str,
        conf_dir: str = "",
        backup_dirs=(),
    ):
        return script_command(
            "facts",
            "node_preflight.sh",
            service_host,
            int(service_port),
            cgroup_root,
            conf_dir,
            *backup_dirs,
        )

    def process(self, output):
        state = self.default()
        values = {}
        addresses = set()
        resolved = False
        for line in output:
            if resolved:
                addresses.update(line.split()[:1])
                continue
            key, _, value = line.strip().partition("=")
            if key == "ahosts":
                resolved = True
            elif key == "room":
                _, free, options = (value.split("|") + ["", ""])[:3]
                state["room"].append(
                    {
                        "free_kib": int(free) if free.isdigit() else None,
                        "read_only": "ro" in options.split(","),
                    }
                )
            else:
                values[key] = value
        state.update(
            root=values.get("uid") == "0",
            sudo=values.get("sudo") == "yes",
            systemd=values.get("systemd") == "yes",
            kernel=values.get("kernel", ""),
            cgroup_fs=values.get("cgroup_fs", ""),
            addresses=sorted(addresses),
            reachable=values.get("reachable") == "yes",
            conf_dir=values.get("conf_dir") == "yes",
            conf_kib=int(kib)
            if (kib := values.get("conf_kib", "").partition("\t")[0]).isdigit()
            else 0,
        )
        state["resolves"] = bool(state["addresses"])
        return state

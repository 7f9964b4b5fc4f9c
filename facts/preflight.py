"""
What a node must offer before the migration may touch it.
"""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

# Reads the mount table, then df's "<free KiB> <mount point>" lines (after its header); prints a
# "room=<index>|<free KiB>|<options>" line a path, with the options of the last mount at its mount
# point (the one seen there). The mount table escapes space, tab, newline and backslash.
ROOM_AWK = r"""
NR == FNR {
    m = $2; gsub(/\\040/, " ", m); gsub(/\\011/, "\t", m); gsub(/\\012/, "\n", m); gsub(/\\134/, "\\\\", m);
    options[m] = $4; next
}
FNR > 1 { t = $0; sub(/^ *[^ ]+ /, "", t); free[c + 0] = $1; at[c++] = t }
END { for (i = 0; i < n; i++) print "room=" i "|" (c == n ? free[i] "|" options[at[i]] : "|") }
"""
ROOM_AWK = " ".join(line.strip() for line in ROOM_AWK.strip().splitlines())


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
        name, port = shlex.quote(service_host), int(service_port)
        tcp = shlex.quote(f"</dev/tcp/{service_host}/{port}")
        room = ""
        if backup_dirs:
            room = (
                # Each at its nearest existing ancestor, by parameter expansion (dirname would cost
                # a process a level).
                "set --; "
                f"for d in {' '.join(shlex.quote(path) for path in backup_dirs)}; do "
                'while [ ! -e "$d" ]; do case $d in */*) d=${d%/*}; d=${d:-/} ;; *) d=. ;; esac; done; '
                'set -- "$@" "$d"; '
                "done; "
                # One df for all of them, and one read of the mount table for their mounts'
                # options: "room=<index>|<free KiB>|<options>", by position (the paths may hold
                # anything). Fewer lines than paths (a df that failed for one) would shift the
                # rest onto the wrong paths: then every path is reported unmeasured.
                'df -k --output=avail,target -- "$@" 2>/dev/null | '
                f"awk -v n={len(backup_dirs)} {shlex.quote(ROOM_AWK)} /proc/self/mounts -; "
            )
        return (
            'echo "uid=$(id -u)"; '
            "sudo -n true 2>/dev/null && echo sudo=yes; "
            "[ -d /run/systemd/system ] && echo systemd=yes; "
            'echo "kernel=$(uname -r)"; '
            f'echo "cgroup_fs=$(stat -fc %T {shlex.quote(cgroup_root)} 2>/dev/null)"; '
            f"timeout 3 bash -c {tcp} >/dev/null 2>&1 && echo reachable=yes; "
            + (
                f"[ -d {shlex.quote(conf_dir)} ] && echo conf_dir=yes && "
                f'echo "conf_kib=$(du -skL {shlex.quote(conf_dir)} 2>/dev/null)"; '
                if conf_dir
                else ""
            )
            + room
            # getaddrinfo's answers come last, as they are (each address once a socket type):
            # the value keeps each address once.
            + f"echo ahosts; getent ahosts {name} 2>/dev/null; true"
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

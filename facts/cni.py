"""
The CNI network configurations kubelet finds in its directory, and those the migration kept.
"""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

# The file names libcni loads; anything else in the directory is not a CNI configuration.
CNI_CONFIG_PATTERNS = ("*.conf", "*.conflist", "*.json")

# Cilium's agent writes its own configuration (05-cilium.conflist by default) with this plugin type.
CILIUM_PLUGIN_TYPE = "cilium-cni"


# Left in the backup directory from before the first move until kubelet has restarted, so that
# a run killed in between still restarts kubelet the next time.
RESTART_PENDING = ".kubelet-restart-pending"


class CniState(FactBase):
    """
    Returns the CNI configuration files kubelet would load from its directory and those kept in
    the backup directory, by file name, telling Cilium's own (a ``cilium-cni`` plugin inside)
    from the others, with each file's SHA-256; and whether a kubelet restart is pending (a run
    moved files and was stopped before it restarted kubelet). One command reads all of it, so a
    re-run pays one round trip for the CNI state.

    + conf_dir: the CNI configuration directory
    + backup_dir: where the migration keeps the configurations it moved

    Missing or empty directories give ``{}``; other files (notes, ``NAME.~1~`` backups) are not
    listed.

    .. code:: python

        {
            "configs": {"05-cilium.conflist": {"cilium": True, "sha256": "41d0…"}},
            "backups": {"10-bridge.conf": {"cilium": False, "sha256": "9f2c…"}},
            "restart_pending": False,
        }
    """

    @staticmethod
    def default():
        return {"configs": {}, "backups": {}, "restart_pending": False}

    def command(self, conf_dir: str, backup_dir: str):
        globs = " ".join(f'"$2"/{pattern}' for pattern in CNI_CONFIG_PATTERNS)
        backup = shlex.quote(backup_dir)
        # One line a file: "<conf|backup> <cilium|other> <sha256> <name>"; the name comes last so
        # that spaces in it survive.
        return (
            "list() { "
            '[ -d "$2" ] || return 0; '
            f"for f in {globs}; do "
            '[ -f "$f" ] || continue; '
            f"if grep -qs '\"{CILIUM_PLUGIN_TYPE}\"' \"$f\"; then k=cilium; else k=other; fi; "
            's=$(sha256sum < "$f") || exit 1; '
            'echo "$1 $k ${s%% *} ${f##*/}"; '
            "done; }; "
            f"list conf {shlex.quote(conf_dir)}; list backup {backup}; "
            f"[ -e {backup}/{RESTART_PENDING} ] && echo restart_pending; true"
        )

    def process(self, output):
        state = self.default()
        for line in output:
            if line.strip() == "restart_pending":
                state["restart_pending"] = True
                continue
            where, kind, sha256, name = line.split(" ", 3)
            state["configs" if where == "conf" else "backups"][name] = {
                "cilium": kind == "cilium",
                "sha256": sha256,
            }
        return state

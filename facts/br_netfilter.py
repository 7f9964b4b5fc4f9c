"""
Whether ``br_netfilter`` is in the kernel, how, and where it is made persistent.
"""

from __future__ import annotations

import posixpath
import shlex

from pyinfra.api import FactBase

MODULE = "br_netfilter"
# systemd-modules-load reads these; the guide writes /etc/modules-load.d/cloud-init.conf.
PERSISTENCE_FILES = ("/etc/modules-load.d/*.conf", "/etc/modules")
# A line that loads the module: its name alone, maybe padded (comments start with # or ;).
PERSISTENCE_LINE_REGEX = f"^[[:space:]]*{MODULE}[[:space:]]*$"


class BrNetfilter(FactBase):
    """
    Returns how ``br_netfilter`` is present in the running kernel and every file that loads it
    at boot.

    ``status`` is ``module`` (loaded, listed in ``/proc/modules``), ``builtin`` (active but
    compiled in, so it cannot be unloaded) or ``absent``. ``module_support`` is False on a
    kernel without loadable modules (no ``/proc/modules``).

    .. code:: python

        {
            "status": "module",
            "module_support": True,
            "persisted_in": ["/etc/modules-load.d/cloud-init.conf"],
        }
    """

    @staticmethod
    def default():
        return {"status": "absent", "module_support": True, "persisted_in": []}

    def command(self):
        # br_netfilter is what registers the net.bridge.bridge-nf-* sysctls, so their
        # directory shows it active whether it is a module or built in.
        return (
            "if [ -e /proc/modules ]; then echo module_support=yes; "
            f"grep -qs '^{MODULE} ' /proc/modules && echo status=module; "
            "else echo module_support=no; fi; "
            "[ -d /proc/sys/net/bridge ] && echo active=yes; "
            f"for f in {' '.join(PERSISTENCE_FILES)}; do "
            f"[ -f \"$f\" ] && grep -qsE '{PERSISTENCE_LINE_REGEX}' \"$f\" && echo \"persisted=$f\"; "
            "done; true"
        )

    def process(self, output):
        state = self.default()
        state["module_support"] = False
        active = False
        for line in output:
            key, _, value = line.strip().partition("=")
            if key == "module_support":
                state["module_support"] = value == "yes"
            elif key == "status":
                state["status"] = value
            elif key == "active":
                active = True
            elif key == "persisted":
                state["persisted_in"].append(value)

        if active and state["status"] != "module":
            state["status"] = "builtin"
        return state


def original_path(backup_name: str) -> str:
    """Where a file in the backup directory came from: ``modules`` is ``/etc/modules``."""
    return "/etc/modules" if backup_name == "modules" else f"/etc/modules-load.d/{backup_name}"


class BrNetfilterBackups(FactBase):
    """
    Returns, for each persistence file backed up before its ``br_netfilter`` line was removed,
    how the file is now, by the file's own path:

    - ``stripped``: exactly the backup without the module's lines (nothing else changed since);
    - ``edited``: changed since in other ways too;
    - ``persisted``: it loads the module again;
    - ``missing``: it is gone.

    + backup_dir: the directory ``br_netfilter_absent`` copied the files to

    Backups without the module's line, and numbered older ones (``NAME.~1~``), are left out.

    .. code:: python

        {
            "/etc/modules-load.d/cloud-init.conf": {
                "backup": "/var/backups/cilium-lab/modules-load.d/cloud-init.conf",
                "state": "stripped",
            },
        }
    """

    default = dict

    def command(self, backup_dir: str):
        return (
            f"d={shlex.quote(backup_dir)}; "
            '[ -d "$d" ] || exit 0; '
            'for b in "$d"/*.conf "$d"/modules; do '
            '[ -f "$b" ] || continue; '
            f"grep -qs '{PERSISTENCE_LINE_REGEX}' \"$b\" || continue; "
            'n=${b##*/}; if [ "$n" = modules ]; then o=/etc/modules; else o="/etc/modules-load.d/$n"; fi; '
            'if [ ! -e "$o" ]; then s=missing; '
            f"elif grep -qs '{PERSISTENCE_LINE_REGEX}' \"$o\"; then s=persisted; "
            f"elif sed '/{PERSISTENCE_LINE_REGEX}/d' \"$b\" | cmp -s - \"$o\"; then s=stripped; "
            "else s=edited; fi; "
            'echo "$s $b"; '
            "done"
        )

    def process(self, output):
        backups = {}
        for line in output:
            state, backup = line.rstrip("\n").split(" ", 1)
            backups[original_path(posixpath.basename(backup))] = {"backup": backup, "state": state}
        return backups

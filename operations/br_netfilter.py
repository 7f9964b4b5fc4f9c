"""
br_netfilter: no longer loaded, nor loaded at boot, once Cilium carries the traffic.
"""

from __future__ import annotations

import posixpath

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation

from operations.log_once import log_once

from facts.br_netfilter import MODULE, PERSISTENCE_LINE_REGEX, BrNetfilter, BrNetfilterBackups


@operation()
def br_netfilter_absent(backup_dir: str = "/var/backups/cilium-lab/modules-load.d"):
    """
    Stop loading ``br_netfilter`` at boot and unload it.

    + backup_dir: where each persistence file is copied before a line is removed from it

    Only the lines that name the module alone go; other lines of the same file (``overlay``,
    comments) stay. A module built into the kernel cannot be unloaded: the operation says so
    and goes on.

    **Example:**

    .. code:: python

        br_netfilter_absent(
            name="Unload br_netfilter and stop loading it at boot",
            backup_dir="/var/backups/cilium-lab/modules-load.d",
        )
    """

    state = host.get_fact(BrNetfilter)
    builtin = f"{MODULE} is built into the kernel and cannot be unloaded; it stays active"

    if state["status"] == "builtin" and state["persisted_in"]:
        # Said aloud when the node changes; on quiet re-runs it is only a noop.
        log_once(builtin, warn=True)

    if state["persisted_in"]:
        yield StringCommand("mkdir", "-p", QuoteString(backup_dir))
    for path in state["persisted_in"]:
        # Copied, not moved: the file may hold other modules the node still needs.
        yield StringCommand(
            "cp",
            "--preserve=all",
            "--backup=numbered",
            QuoteString(path),
            QuoteString(posixpath.join(backup_dir, posixpath.basename(path))),
        )
        yield StringCommand("sed", "-i", QuoteString(f"/{PERSISTENCE_LINE_REGEX}/d"), QuoteString(path))

    if state["status"] == "module":
        yield StringCommand("modprobe", "-r", MODULE)
    elif state["persisted_in"]:
        return
    elif state["status"] == "builtin":
        host.noop(builtin)
    else:
        host.noop(f"{MODULE} is not loaded and not loaded at boot")


@operation()
def br_netfilter_persisted(
    backup_dir: str = "/var/backups/cilium-lab/modules-load.d",
    persist_file: str = "/etc/modules-load.d/br_netfilter.conf",
):
    """
    Load ``br_netfilter`` at boot again, and now where the kernel has modules: the way back.

    + backup_dir: where :func:`br_netfilter_absent` copied each persistence file
    + persist_file: the file to add the module to when no file and no backup loads it

    A file that is exactly its backup without the module's lines (or that is gone) gets the
    backup back, byte for byte, with its mode and owner. A file changed since in other ways keeps
    those changes and gets the module's line appended; its backup stays.

    **Example:**

    .. code:: python

        br_netfilter_persisted(
            name="Load br_netfilter at boot again",
            backup_dir="/var/backups/cilium-lab/modules-load.d",
        )
    """

    state = host.get_fact(BrNetfilter)
    backups = host.get_fact(BrNetfilterBackups, backup_dir=backup_dir)
    persisted = bool(state["persisted_in"])
    changed = False

    for path, backup in sorted(backups.items()):
        if backup["state"] in ("stripped", "missing"):
            yield StringCommand("mv", "-f", QuoteString(backup["backup"]), QuoteString(path))
        elif backup["state"] == "edited":
            log_once(f"{path} changed since its backup: {MODULE} is added to it, the backup stays", warn=True)
            yield StringCommand("echo", MODULE, ">>", QuoteString(path))
        else:
            continue
        persisted = changed = True

    if not persisted:
        changed = True
        yield StringCommand("echo", MODULE, ">>", QuoteString(persist_file))

    if state["status"] == "absent" and state["module_support"]:
        changed = True
        yield StringCommand("modprobe", MODULE)

    if not changed:
        now = {"module": "loaded", "builtin": "built into the kernel"}.get(state["status"], "not loaded")
        host.noop(f"{MODULE} is loaded at boot by {', '.join(state['persisted_in'])}, and {now} now")

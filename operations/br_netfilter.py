"""
br_netfilter: no longer loaded, nor loaded at boot, once Cilium carries the traffic.
"""

from __future__ import annotations

import posixpath

from pyinfra import host, logger
from pyinfra.api import QuoteString, StringCommand, operation
from pyinfra.api.state import StateStage

from facts.br_netfilter import MODULE, PERSISTENCE_LINE_REGEX, BrNetfilter


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

    if state["status"] == "builtin" and state["persisted_in"] and _first_pass():
        # Said aloud when the node changes; on quiet re-runs it is only a noop.
        logger.warning(f"{host.print_prefix}{builtin}")

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


def _first_pass() -> bool:
    """Whether pyinfra runs this operation's generator for the first time in this run.

    Without ``-y`` (and with ``--dry``) it runs once to detect changes, then again to execute;
    with ``-y`` only to execute.
    """
    state = host.state
    if state.current_stage == StateStage.Prepare:
        return True
    return not state.should_check_for_changes()

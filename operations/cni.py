"""
The old CNI configurations: out of kubelet's way, kept in a backup directory.
"""

from __future__ import annotations

import posixpath

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation

from operations.log_once import log_once
from facts.cni import RESTART_PENDING, CniState


@operation()
def cni_configs_absent(
    conf_dir: str = "/etc/cni/net.d",
    backup_dir: str = "/var/backups/cilium-lab/cni",
    restart_unit: str | None = "kubelet.service",
):
    """
    Move every CNI configuration that is not Cilium's out of the CNI directory, then restart
    kubelet so that it drops the old network.

    + conf_dir: the directory kubelet reads CNI configurations from
    + backup_dir: where the old configurations go; nothing is deleted
    + restart_unit: the unit to restart when a configuration was moved (None: none)

    Files that are not CNI configurations (``*.conf``, ``*.conflist``, ``*.json``) stay where
    they are. A backup of the same name is never overwritten: ``mv --backup=numbered`` keeps the
    earlier one as ``NAME.~1~``, so a config restored by hand and removed again loses nothing.
    kubelet is restarted only when a file was moved, or when a run that moved one was stopped
    before it restarted kubelet (a marker in the backup directory says so).

    **Example:**

    .. code:: python

        cni_configs_absent(
            name="Remove the old CNI configurations",
            conf_dir="/etc/cni/net.d",
            backup_dir="/var/backups/cilium-lab/cni",
            restart_unit="kubelet.service",
        )
    """

    state = host.get_fact(CniState, conf_dir=conf_dir, backup_dir=backup_dir)
    old = sorted(name for name, config in state["configs"].items() if not config["cilium"])

    if not old and not (restart_unit and state["restart_pending"]):
        host.noop(f"no CNI configuration other than Cilium's in {conf_dir}")
        return

    yield from _moves_then_restart(
        [(posixpath.join(conf_dir, name), posixpath.join(backup_dir, name)) for name in old],
        backup_dir,
        restart_unit,
    )


@operation()
def cni_configs_restored(
    conf_dir: str = "/etc/cni/net.d",
    backup_dir: str = "/var/backups/cilium-lab/cni",
    restart_unit: str | None = "kubelet.service",
):
    """
    Put the CNI configurations that :func:`cni_configs_absent` moved away back in the CNI
    directory, move Cilium's own out of kubelet's way, then restart kubelet: the way back.

    + conf_dir: the directory kubelet reads CNI configurations from
    + backup_dir: where :func:`cni_configs_absent` moved them
    + restart_unit: the unit to restart when a configuration moved (None: none)

    A configuration already in the CNI directory stays as it is, even when its backup differs
    (the operation says so): it was put there after the migration. Cilium's configuration goes
    to the backup directory, like the others went: with it in place, kubelet would keep using
    Cilium. Earlier backups of the same name (``NAME.~1~``) stay where they are.

    **Example:**

    .. code:: python

        cni_configs_restored(
            name="Restore the old CNI configurations",
            conf_dir="/etc/cni/net.d",
            backup_dir="/var/backups/cilium-lab/cni",
            restart_unit="kubelet.service",
        )
    """

    state = host.get_fact(CniState, conf_dir=conf_dir, backup_dir=backup_dir)
    configs, saved = state["configs"], state["backups"]
    cilium = sorted(name for name, config in configs.items() if config["cilium"])
    # Cilium's configurations in the backup directory were moved there by an earlier rollback.
    restore = sorted(name for name, config in saved.items() if not config["cilium"] and name not in configs)

    for name in sorted(set(saved) & set(configs)):
        if not saved[name]["cilium"] and saved[name]["sha256"] != configs[name]["sha256"]:
            log_once(f"{name} in {conf_dir} differs from its backup in {backup_dir}: left as it is", warn=True)

    if not cilium and not restore and not (restart_unit and state["restart_pending"]):
        host.noop(f"every backed-up CNI configuration is in {conf_dir}, and none of Cilium's")
        return

    moves = [(posixpath.join(conf_dir, name), posixpath.join(backup_dir, name)) for name in cilium]
    moves += [(posixpath.join(backup_dir, name), posixpath.join(conf_dir, name)) for name in restore]
    yield from _moves_then_restart(moves, backup_dir, restart_unit)


def _moves_then_restart(moves: list[tuple[str, str]], backup_dir: str, restart_unit: str | None):
    marker = posixpath.join(backup_dir, RESTART_PENDING)
    if moves:
        yield StringCommand("mkdir", "-p", QuoteString(backup_dir))
    if moves and restart_unit:
        yield StringCommand("touch", QuoteString(marker))
    for source, target in moves:
        # Never over an existing file: an earlier one of the same name becomes NAME.~1~.
        yield StringCommand("mv", "--backup=numbered", QuoteString(source), QuoteString(target))
    if restart_unit:
        yield StringCommand("systemctl", "restart", QuoteString(restart_unit))
        yield StringCommand("rm", "-f", QuoteString(marker))

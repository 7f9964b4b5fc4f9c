"""
The old CNI configurations: out of kubelet's way, kept in a backup directory.
"""

from __future__ import annotations

import posixpath

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation

from pyinfra.facts.files import File

from facts.cni import CniConfigs

# Left in the backup directory from before the first move until kubelet has restarted, so that
# a run killed in between still restarts kubelet the next time.
RESTART_PENDING = ".kubelet-restart-pending"


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

    configs = host.get_fact(CniConfigs, directory=conf_dir)
    old = sorted(name for name, config in configs.items() if not config["cilium"])
    marker = posixpath.join(backup_dir, RESTART_PENDING)

    # The marker is only read when there is nothing to move: a move restarts kubelet anyway.
    restart_pending = bool(restart_unit) and (
        bool(old) or host.get_fact(File, path=marker) is not None
    )

    if not old and not restart_pending:
        host.noop(f"no CNI configuration other than Cilium's in {conf_dir}")
        return

    if old:
        yield StringCommand("mkdir", "-p", QuoteString(backup_dir))
    if old and restart_unit:
        yield StringCommand("touch", QuoteString(marker))
    for name in old:
        yield StringCommand(
            "mv",
            "--backup=numbered",
            QuoteString(posixpath.join(conf_dir, name)),
            QuoteString(posixpath.join(backup_dir, name)),
        )

    if restart_pending:
        yield StringCommand("systemctl", "restart", QuoteString(restart_unit))
        yield StringCommand("rm", "-f", QuoteString(marker))

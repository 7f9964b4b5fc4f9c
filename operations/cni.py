"""
The old CNI configurations: out of kubelet's way, kept in a backup directory, and put back exactly.
"""

from __future__ import annotations

import json
import posixpath
import string

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation
from pyinfra.api.exceptions import OperationValueError

from facts.cni import CILIUM_BACKUP_SUFFIX, RECORD, RECORDED, RESTART_PENDING, CniState
from facts.directories import directory_problems
from operations.log_once import log_once
from operations.node_read import NodeRead, node_fact, reads_node
from operations.records import retired, text_written_once

__all__ = ["RESTART_PENDING", "cni_configs_absent", "cni_configs_restored"]


@operation()
@reads_node
def cni_configs_absent(
    conf_dir: str = "/etc/cni/net.d",
    backup_dir: str = "/var/backups/cilium-lab/cni",
    restart_unit: str | None = "kubelet.service",
    node_read: NodeRead | None = None,
):
    """
    Move every CNI configuration that is not Cilium's out of the CNI directory, then restart
    kubelet so that it drops the old network.

    + conf_dir: the directory kubelet reads CNI configurations from
    + backup_dir: where the old configurations go; nothing is deleted
    + restart_unit: the unit to restart when a configuration was moved (None: none)
    + node_read: the run's read of the node, used while it holds; None to read the fact

    A configuration is what kubelet would load: a file or a symlink named ``*.conf``,
    ``*.conflist`` or ``*.json``, whatever else is in its name. A symlink moves as the symlink it
    is, its target text unchanged, even where it dangles in the backup directory. Other files
    stay where they are. Before its first move, the migration records in
    ``backup_dir/migration-record`` what it moves (name, type, mode, symlink target, SHA-256), once:
    a later run moves what came back without rewriting the record, which
    :func:`cni_configs_restored` restores from. A backup of the same name is never overwritten:
    ``mv --backup=numbered`` keeps the earlier one as ``NAME.~1~``. kubelet is restarted only
    when a file was moved, or when a run that moved one was stopped before it restarted kubelet
    (a marker in the backup directory says so).

    **Example:**

    .. code:: python

        cni_configs_absent(
            name="Remove the old CNI configurations",
            conf_dir="/etc/cni/net.d",
            backup_dir="/var/backups/cilium-lab/cni",
            restart_unit="kubelet.service",
        )
    """

    _check_dirs(conf_dir, backup_dir)
    state = node_fact(node_read, CniState, conf_dir=conf_dir, backup_dir=backup_dir)
    old = sorted(name for name, config in state["configs"].items() if not config["cilium"])

    if not old and not (restart_unit and state["restart_pending"]):
        host.noop(f"no CNI configuration other than Cilium's in {conf_dir}")
        return

    if old and state["record"] is not None:
        later = [name for name in old if name not in state["record"]]
        if later:
            log_once(
                f"{_names(later)} not in the migration's record in {backup_dir}: moved, and left there by a rollback"
            )

    record = None
    if old and state["record"] is None:
        record = _record_text(conf_dir, {name: state["configs"][name] for name in old})
    yield from _moves_then_restart(
        [(posixpath.join(conf_dir, name), posixpath.join(backup_dir, name)) for name in old],
        backup_dir,
        restart_unit,
        state["restart_pending"],
        record=record,
    )


@operation()
def cni_configs_restored(
    conf_dir: str = "/etc/cni/net.d",
    backup_dir: str = "/var/backups/cilium-lab/cni",
    restart_unit: str | None = "kubelet.service",
):
    """
    Put the CNI configurations that :func:`cni_configs_absent` moved away back in the CNI
    directory, and those Cilium's agent renamed to ``NAME.cilium_bak``, move Cilium's own out of
    kubelet's way, then restart kubelet: the way back.

    + conf_dir: the directory kubelet reads CNI configurations from
    + backup_dir: where :func:`cni_configs_absent` moved them
    + restart_unit: the unit to restart when a configuration moved (None: none)

    What comes back is what the migration's record lists, from the copies kept in the backup
    directory (a kept copy that differs from the record comes back, with a warning). Once they are
    back the record is retired (renamed ``migration-record.~restored-<UTC time>~``): a second
    rollback finds nothing to do, and the next migration records afresh. Without a record
    nothing comes back from the backup directory: the migration moved nothing.

    A configuration already in the CNI directory stays as it is, even when its backup differs
    (the operation says so): it was put there after the migration. ``NAME.cilium_bak`` becomes
    ``NAME`` again, as ``cilium-dbg cleanup`` would do, unless ``NAME`` is there (both stay, and
    the operation says so) or it is Cilium's. Cilium's configuration goes to the backup directory,
    like the others went: with it in place, kubelet would keep using Cilium. Earlier backups of
    the same name (``NAME.~1~``) stay where they are.

    **Example:**

    .. code:: python

        cni_configs_restored(
            name="Restore the old CNI configurations",
            conf_dir="/etc/cni/net.d",
            backup_dir="/var/backups/cilium-lab/cni",
            restart_unit="kubelet.service",
        )
    """

    _check_dirs(conf_dir, backup_dir)
    state = host.get_fact(CniState, conf_dir=conf_dir, backup_dir=backup_dir)
    configs, saved, record = state["configs"], state["backups"], state["record"]
    cilium = sorted(name for name, config in configs.items() if config["cilium"])

    # Without a record the migration moved nothing (it records before its first move), or every
    # migration recorded was rolled back: what is left in the backup directory are copies that
    # were not put back then, and are not to be now.
    wanted = record or {}
    if record is not None:
        unrecorded = sorted(
            name for name, kept in saved.items() if name not in record and not kept["cilium"]
        )
        if unrecorded:
            log_once(
                f"{_names(unrecorded)} in {backup_dir}: not in the migration's record, left there"
            )

    restore = []
    for name in sorted(wanted):
        if name in configs:
            if name in saved and not _same(configs[name], saved[name]):
                log_once(
                    f"{_shown(name)} in {conf_dir} differs from its backup in {backup_dir}: left as it is",
                    warn=True,
                )
            elif name not in saved and not _same(configs[name], wanted[name]):
                log_once(
                    f"{_shown(name)} in {conf_dir} differs from the migration's record: left as it is",
                    warn=True,
                )
        elif name not in saved:
            if name in state["renamed"]:
                continue  # Cilium's agent renamed it after it was put back: see below.
            log_once(
                f"{_shown(name)} is in the migration's record but not in {backup_dir}: not restored",
                warn=True,
            )
        else:
            if not _same(saved[name], wanted[name]):
                log_once(
                    f"{_shown(name)} in {backup_dir} differs from the migration's record: restored as kept",
                    warn=True,
                )
            restore.append(name)

    renamed = []
    for name, config in sorted(state["renamed"].items()):
        if config["cilium"]:
            # Cilium's own older configuration (05-cilium.conf), renamed by its agent: not ours to load.
            continue
        if name in configs or name in restore:
            log_once(
                f"{_shown(name + CILIUM_BACKUP_SUFFIX)} left beside {_shown(name)} in {conf_dir}: both kept",
                warn=True,
            )
        else:
            renamed.append(name)

    if (
        not cilium
        and not restore
        and not renamed
        and record is None
        and not (restart_unit and state["restart_pending"])
    ):
        host.noop(f"every backed-up CNI configuration is in {conf_dir}, and none of Cilium's")
        return

    # Cilium's goes last. containerd reloads its CNI configuration on a write, a rename or a
    # removal in the directory, never on a file created there (a move into it is a create,
    # cri's cni_conf_syncer): with Cilium's moved out first, it reloads an empty directory and
    # then ignores the old ones coming back, and the node stays NotReady ("cni plugin not
    # initialized") until containerd restarts. Moved out last, it reloads them.
    moves = [(posixpath.join(backup_dir, name), posixpath.join(conf_dir, name)) for name in restore]
    moves += [
        (posixpath.join(conf_dir, name + CILIUM_BACKUP_SUFFIX), posixpath.join(conf_dir, name))
        for name in renamed
    ]
    moves += [(posixpath.join(conf_dir, name), posixpath.join(backup_dir, name)) for name in cilium]
    yield from _moves_then_restart(
        moves, backup_dir, restart_unit, state["restart_pending"], retire=record is not None
    )


def _record_text(conf_dir: str, entries: dict[str, dict]) -> str:
    """The record of ``entries`` (name -> a :class:`CniState` entry) moved out of ``conf_dir``:
    one line of ASCII JSON, names with newlines or any other byte included."""
    files = [
        {"name": name, **{key: entries[name][key] for key in RECORDED}} for name in sorted(entries)
    ]
    return json.dumps({"conf_dir": conf_dir, "files": files}, ensure_ascii=True, sort_keys=True)


def _check_dirs(conf_dir: str, backup_dir: str) -> None:
    problems = directory_problems({"cni_conf_dir": conf_dir, "cni_backup_dir": backup_dir})
    if problems:
        raise OperationValueError(problems[0])


def _same(entry: dict, other: dict) -> bool:
    """Whether two entries are the same configuration: a symlink by its target text (what it
    reads as depends on where it is), a file by its content and mode."""
    if entry["type"] != other["type"]:
        return False
    if entry["type"] == "symlink":
        return entry["target"] == other["target"]
    return (entry["sha256"], entry["mode"]) == (other["sha256"], other["mode"])


def _shown(name: str) -> str:
    # A newline or a byte that is not UTF-8 would garble the log: those names are shown escaped.
    return name if name.isprintable() else ascii(name)


def _names(names: list[str]) -> str:
    return ", ".join(_shown(name) for name in names)


def _moves_then_restart(
    moves: list[tuple[str, str]],
    backup_dir: str,
    restart_unit: str | None,
    restart_pending: bool,
    record: str | None = None,
    retire: bool = False,
):
    marker = posixpath.join(backup_dir, RESTART_PENDING)
    if moves:
        yield StringCommand("mkdir", "-p", QuoteString(backup_dir))
    if record is not None:
        # A record that appeared since the fact was read is another run's: no move on it.
        yield text_written_once(posixpath.join(backup_dir, RECORD), record, existing_ok=False)
    if moves and restart_unit:
        yield StringCommand("touch", QuoteString(marker))
    for source, target in moves:
        yield _move(source, target)
    if retire:
        # Renamed aside, not removed: it says what the migration moved, should a restored file be
        # questioned later; a retired record also tells a later rollback that the kept files left
        # in the backup directory are not to be put back.
        yield retired(posixpath.join(backup_dir, RECORD))
    if restart_unit and (moves or restart_pending):
        yield StringCommand("systemctl", "restart", QuoteString(restart_unit))
        yield StringCommand("rm", "-f", QuoteString(marker))


# Bytes a printf format can carry as they are; every other one goes as an octal escape.
_PRINTF_PLAIN = frozenset((string.ascii_letters + string.digits + "/._-+,:=@").encode())


def _move(source: str, target: str) -> StringCommand:
    # Never over an existing file: an earlier one of the same name becomes NAME.~1~.
    try:
        source.encode("utf-8")
        target.encode("utf-8")
    except UnicodeEncodeError:
        # A name that is not UTF-8 cannot travel in the command's text: printf writes its bytes
        # from octal escapes, NUL-terminated for xargs.
        paths = "".join(_octal(path) + "\\000" for path in (source, target))
        return StringCommand(
            "printf", QuoteString(paths), "|", "xargs", "-0", "mv", "--backup=numbered", "--"
        )
    return StringCommand("mv", "--backup=numbered", QuoteString(source), QuoteString(target))


def _octal(path: str) -> str:
    return "".join(
        chr(byte) if byte in _PRINTF_PLAIN else f"\\{byte:03o}"
        for byte in path.encode("utf-8", "surrogateescape")
    )

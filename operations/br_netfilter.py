"""
br_netfilter: no longer loaded, nor loaded at boot, once Cilium carries the traffic; and back.
"""

from __future__ import annotations

import posixpath

from pyinfra import host
from pyinfra.api import QuoteString, StringCommand, operation

from facts.br_netfilter import (
    MODULE,
    PERSISTENCE_LINE_REGEX,
    BrNetfilter,
    BrNetfilterBackups,
    record_name,
)
from facts.shell import script_argv
from operations.log_once import log_once
from operations.node_read import NodeRead, node_fact, reads_node
from operations.records import retired, written_once


@operation()
@reads_node
def br_netfilter_absent(
    backup_dir: str = "/var/backups/cilium-lab/modules-load.d", node_read: NodeRead | None = None
):
    """
    Stop loading ``br_netfilter`` at boot and unload it.

    + backup_dir: where each persistence file is recorded and copied before a line is removed
      from it
    + node_read: the run's read of the node, used while it holds; None to read the fact

    Only the lines that name the module alone go; other lines of the same file (``overlay``,
    comments) stay. A symlink stays a symlink: the file it points to is edited, once however
    many links lead to it (Debian's ``/etc/modules-load.d/modules.conf -> ../modules``).

    Before the first edit, each file and each link to it is recorded in ``backup_dir``
    (``<path, %-quoted>.record``: type, link target, mode, owner, SHA-256, the module's lines
    and their numbers), and the file's content is copied there (``NAME``; an older copy of the
    same name becomes ``NAME.~1~``). A record is written once: later runs, and runs at the same
    time, leave it as the first one took it, so :func:`br_netfilter_persisted` gives back the
    node as it was before the migration.

    A module built into the kernel cannot be unloaded: the operation says so and goes on.

    **Example:**

    .. code:: python

        br_netfilter_absent(
            name="Unload br_netfilter and stop loading it at boot",
            backup_dir="/var/backups/cilium-lab/modules-load.d",
        )
    """

    state = node_fact(node_read, BrNetfilter)
    builtin = f"{MODULE} is built into the kernel and cannot be unloaded; it stays active"

    if state["status"] == "builtin" and state["persisted_in"]:
        # Said aloud when the node changes; on quiet re-runs it is only a noop.
        log_once(builtin, warn=True)

    files = state.get("files", {})
    edited: list[str] = []
    links: list[str] = []
    for path in state["persisted_in"]:
        described = files.get(path, {})
        if described.get("type") == "symlink":
            links.append(path)
            path = described["resolved"]
        if path not in edited:
            edited.append(path)

    if edited:
        yield StringCommand("mkdir", "-p", QuoteString(backup_dir))
    for path in edited:
        # Copied, not moved: the file may hold other modules the node still needs.
        yield StringCommand(
            "cp",
            "--preserve=all",
            "--backup=numbered",
            QuoteString(path),
            QuoteString(posixpath.join(backup_dir, posixpath.basename(path))),
        )
    if edited:
        yield _records_written(backup_dir, edited + links)
    for path in edited:
        # The resolved file already; --follow-symlinks still keeps a link a link should the
        # path have become one since the fact was read.
        yield StringCommand(
            "sed",
            "-i",
            "--follow-symlinks",
            QuoteString(f"/{PERSISTENCE_LINE_REGEX}/d"),
            QuoteString(path),
        )

    if state["status"] == "module":
        yield StringCommand("modprobe", "-r", MODULE)
    elif state["persisted_in"]:
        return
    elif state["status"] == "builtin":
        host.noop(builtin)
    else:
        host.noop(f"{MODULE} is not loaded and not loaded at boot")


def _records_written(backup_dir: str, paths: list[str]) -> str:
    """Each path described, at the last moment before its first edit, into its record. A record
    already there was taken before any edit (every run links its record before its sed): it
    stands, and this run's description, which may show a file already stripped, is dropped."""
    return " && ".join(
        written_once(
            posixpath.join(backup_dir, record_name(path)),
            *script_argv("facts", "describe.sh", PERSISTENCE_LINE_REGEX, path),
        )
        for path in paths
    )


@operation()
def br_netfilter_persisted(
    backup_dir: str = "/var/backups/cilium-lab/modules-load.d",
    persist_file: str = "/etc/modules-load.d/br_netfilter.conf",
):
    """
    Load ``br_netfilter`` at boot again, and now where the kernel has modules: the way back.

    + backup_dir: where :func:`br_netfilter_absent` recorded and copied each persistence file
    + persist_file: the file to add the module to when no file and no record loads it

    A file that is exactly its record without the module's lines (or that is gone) gets its
    recorded content back, byte for byte, with its recorded mode and owner; a symlink that is
    gone comes back pointing where it did. A file changed since in other ways keeps those changes
    and gets the module's line appended; its copy stays. Each record is then renamed aside
    (``….record.~restored-<UTC time>~``), so the next migration records afresh and a second
    rollback changes nothing.

    **Example:**

    .. code:: python

        br_netfilter_persisted(
            name="Load br_netfilter at boot again",
            backup_dir="/var/backups/cilium-lab/modules-load.d",
        )
    """

    backups = host.get_fact(BrNetfilterBackups, backup_dir=backup_dir)
    records, copies = backups["records"], backups["copies"]
    state = host.get_fact(BrNetfilter, paths=sorted(records))
    now = state.get("files", {})
    persisted = bool(state["persisted_in"])
    changed = False
    taken: set[str] = set()

    def added(path: str, why: str):
        log_once(f"{path} {why}: {MODULE} is added to it", warn=True)
        return StringCommand("echo", MODULE, ">>", QuoteString(path))

    # Files first, then links: a link comes back to a file that is back.
    for path, record in sorted(records.items(), key=lambda item: item[1]["type"] == "symlink"):
        current = now.get(path)
        if record["type"] == "symlink":
            if current is None:
                yield StringCommand(
                    "ln", "-s", "--", QuoteString(record["target"]), QuoteString(path)
                )
                yield StringCommand("chown", "-h", record["owner"], QuoteString(path))
                changed = True
            elif current["type"] != "symlink" or current["target"] != record["target"]:
                log_once(
                    f"{path} was a symlink to {record['target']} before the migration and has changed since: "
                    "left as it is",
                    warn=True,
                )
            continue

        if (
            current is not None
            and current["type"] == "file"
            and current["sha256"] == record["sha256"]
        ):
            continue
        if current is None or (
            current["type"] == "file" and current["sha256"] == record["stripped_sha256"]
        ):
            name = _copy_of(path, record["sha256"], copies, taken)
            if name is not None:
                taken.add(name)
                yield from _copy_restored(
                    posixpath.join(backup_dir, name), path, copies[name], record
                )
            else:
                yield added(path, f"has no copy of its recorded content in {backup_dir}")
            persisted = changed = True
        elif current["type"] != "file":
            log_once(
                f"{path} was a file before the migration, a {current['type']} now: left as it is",
                warn=True,
            )
        elif not current["module_lines"]:
            yield added(
                path,
                f"changed since the migration recorded it; its earlier content stays in {backup_dir}",
            )
            persisted = changed = True

    if not persisted:
        changed = True
        yield StringCommand("echo", MODULE, ">>", QuoteString(persist_file))

    if state["status"] == "absent" and state["module_support"]:
        changed = True
        yield StringCommand("modprobe", MODULE)

    for _path, record in sorted(records.items()):
        # Renamed aside, not removed: it stays the account of what the migration took from each
        # file and what the rollback gave back, should a node be found not as expected. Nothing
        # reads it again; the record's own name is free for the next migration's.
        yield retired(posixpath.join(backup_dir, record["name"]))
        changed = True

    if not changed:
        loaded = {"module": "loaded", "builtin": "built into the kernel"}.get(
            state["status"], "not loaded"
        )
        host.noop(
            f"{MODULE} is loaded at boot by {', '.join(state['persisted_in'])}, and {loaded} now"
        )


def _copy_of(path: str, sha256: str, copies: dict, taken: set[str]) -> str | None:
    """The copy holding a record's content, found by its SHA-256: a run beside the migration may
    have made a later copy of the same name, of the file already stripped."""
    base = posixpath.basename(path)
    found = [
        name for name, copy in copies.items() if copy.get("sha256") == sha256 and name not in taken
    ]
    # The one named after the file first: moved back, it leaves no copy without a number; then
    # its own older copies (NAME.~N~), before another file's of the same content.
    found.sort(key=lambda name: (name != base, not name.startswith(f"{base}.~"), name))
    return found[0] if found else None


def _copy_restored(copy_path: str, path: str, copy: dict, record: dict):
    # Moved: cp --preserve=all gave the copy the file's mode, owner and times, which mv keeps;
    # the record has the last word on mode and owner.
    yield StringCommand("mv", "-f", QuoteString(copy_path), QuoteString(path))
    if copy.get("owner") != record["owner"]:
        yield StringCommand("chown", record["owner"], QuoteString(path))
    if copy.get("mode") != record["mode"]:
        yield StringCommand("chmod", record["mode"], QuoteString(path))

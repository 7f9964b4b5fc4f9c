"""
The CNI network configurations kubelet finds in its directory, those the migration kept, and the
migration's record of what it moved.
"""

from __future__ import annotations

import json
import posixpath

from pyinfra.api import FactBase
from pyinfra.api.exceptions import FactProcessError

from facts.records import RETIRED_INFIX
from facts.shell import script_command

# The file names libcni loads (its ConfFiles: every entry of the directory that is not a
# directory, by extension, dot files too); anything else in the directory is not a configuration.
CNI_CONFIG_SUFFIXES = (".conf", ".conflist", ".json")

# Cilium's agent writes its own configuration (05-cilium.conflist by default) with this plugin type.
CILIUM_PLUGIN_TYPE = "cilium-cni"

# With cni.exclusive (the chart's default) Cilium's agent renames every other configuration in
# the directory to NAME.cilium_bak; `cilium-dbg cleanup` renames them back.
CILIUM_BACKUP_SUFFIX = ".cilium_bak"

# Left in the backup directory from before the first move until kubelet has restarted, so that
# a run killed in between still restarts kubelet the next time.
RESTART_PENDING = ".kubelet-restart-pending"

# What the migration moved, written once, before its first move (see operations.cni). A name
# without a CNI extension, so that nothing reads it as a configuration.
RECORD = "migration-record"


# Fields of an entry, as the record keeps them (the fact adds whether it is Cilium's; the
# record is written by operations.cni).
RECORDED = ("type", "mode", "target", "sha256")


# Names and link targets made only of these come through as they are; any other goes hex-encoded
# ("x:<hex>"), so that any byte, newlines included, comes through. Listed one by one: a range
# ([a-z]) would depend on the node's locale.
PLAIN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+,@%~/-"
HEXED = "x:"


def _encoded(text: str) -> str:
    """A name or target as the fact's command prints it (for fixtures and tests)."""
    if text and not text.startswith("-") and all(char in PLAIN for char in text):
        return text
    return HEXED + text.encode("utf-8", "surrogateescape").hex()


def _decoded(field: str) -> str:
    if not field.startswith(HEXED):
        return field
    # File names are bytes: those that are not UTF-8 come back as surrogates, and go out again
    # as the same bytes (see operations.cni).
    return bytes.fromhex(field[len(HEXED) :]).decode("utf-8", "surrogateescape")


class CniState(FactBase):
    """
    Returns the CNI configurations kubelet would load from its directory, those kept in the
    backup directory, those Cilium's agent renamed to ``NAME.cilium_bak``, the migration's record
    of what it moved, and whether a kubelet restart is pending (a run moved files and was stopped
    before it restarted kubelet). One command reads all of it, so a re-run pays one round trip
    for the CNI state.

    + conf_dir: the CNI configuration directory
    + backup_dir: where the migration keeps the configurations it moved

    A configuration is a regular file or a symlink (followed or dangling) named ``*.conf``,
    ``*.conflist`` or ``*.json``, as libcni finds them; directories, other files (notes,
    ``NAME.~1~`` backups) and other kinds of entry are not listed. Each entry has its type, its
    mode, a symlink's target as written, the SHA-256 of what it reads as (``None`` when that is
    not a regular file) and whether a ``cilium-cni`` plugin is in it. ``renamed`` is keyed by the
    name before Cilium's agent renamed it. ``record`` is ``None`` when there is none; ``retired``
    lists the records of finished rollbacks. Names and targets with anything but letters, digits
    and ``._+,@%~/-`` are read hex-encoded, so that any byte in them, newlines included, comes
    through. Missing or empty directories give the default.

    .. code:: python

        {
            "configs": {
                "05-cilium.conflist": {"type": "file", "mode": "644", "target": None,
                                       "sha256": "41d0…", "cilium": True},
            },
            "backups": {
                "10-bridge.conf": {"type": "symlink", "mode": "777",
                                   "target": "../templates/bridge.conf", "sha256": None,
                                   "cilium": False},
            },
            "renamed": {},
            "record": {
                "10-bridge.conf": {"type": "symlink", "mode": "777",
                                   "target": "../templates/bridge.conf", "sha256": "9f2c…"},
            },
            "retired": [],
            "restart_pending": False,
        }
    """

    @staticmethod
    def default():
        return {
            "configs": {},
            "backups": {},
            "renamed": {},
            "record": None,
            "retired": [],
            "restart_pending": False,
        }

    def command(self, conf_dir: str, backup_dir: str):
        backup = backup_dir.rstrip("/") or "/"
        return script_command(
            "facts",
            "cni_state.sh",
            conf_dir,
            backup_dir,
            posixpath.join(backup, RECORD),
            posixpath.join(backup, RESTART_PENDING),
            RETIRED_INFIX,
            HEXED,
            PLAIN,
            CILIUM_PLUGIN_TYPE,
            CILIUM_BACKUP_SUFFIX,
            *CNI_CONFIG_SUFFIXES,
        )

    def process(self, output):
        state = self.default()
        lines = list(output)
        # The regular files of the directory being listed, waiting for their modes and plugins.
        regular: list[dict] = []
        for index, line in enumerate(lines):
            fields = line.split()
            try:
                if fields == ["restart_pending"]:
                    state["restart_pending"] = True
                elif fields == ["record"]:
                    text = bytes.fromhex("".join("".join(lines[index + 1 :]).split()))
                    state["record"] = self._record(text.decode("utf-8", "surrogateescape"))
                    break
                elif fields[0] == "retired":
                    (name,) = fields[1:]
                    state["retired"].append(_decoded(name))
                elif fields[0] == "modes":
                    if len(fields) - 1 != len(regular):
                        raise ValueError
                    for entry, mode in zip(regular, fields[1:], strict=True):
                        entry["mode"] = mode
                elif fields[0] == "cilium":
                    if len(fields) - 1 != len(regular) or any(
                        entry["mode"] is None for entry in regular
                    ):
                        raise ValueError
                    for entry, count in zip(regular, fields[1:], strict=True):
                        entry["cilium"] = int(count) > 0
                    regular = []
                else:
                    where, kind, sha256, name, target, *mode = fields
                    if len(mode) != (sha256 == "-"):
                        raise ValueError
                    entry = {
                        "type": kind,
                        "mode": mode[0] if mode else None,
                        "target": None if target == "-" else _decoded(target),
                        "sha256": None if sha256 == "-" else sha256,
                        "cilium": False,
                    }
                    if not mode:
                        regular.append(entry)
                    name = _decoded(name)
                    if where == "backup":
                        state["backups"][name] = entry
                    elif name.endswith(CILIUM_BACKUP_SUFFIX):
                        state["renamed"][name[: -len(CILIUM_BACKUP_SUFFIX)]] = entry
                    else:
                        state["configs"][name] = entry
            except (ValueError, IndexError):
                raise FactProcessError(f"unexpected line in the CNI state: {line!r}") from None
        if regular:
            raise FactProcessError("the CNI state ends before the modes of the files it lists")
        state["retired"].sort()
        return state

    @staticmethod
    def _record(text: str) -> dict[str, dict]:
        try:
            files = json.loads(text)["files"]
            record = {entry["name"]: {key: entry[key] for key in RECORDED} for entry in files}
        except (ValueError, TypeError, KeyError) as e:
            # Restoring from a guess could put back what was never there: stop instead.
            raise FactProcessError(
                f"not a record the migration wrote ({e!r}): {text[:200]!r}"
            ) from None
        if not all(
            isinstance(name, str) and entry["type"] in ("file", "symlink")
            for name, entry in record.items()
        ):
            raise FactProcessError(f"not a record the migration wrote: {text[:200]!r}")
        return record

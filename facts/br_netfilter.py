"""
Whether ``br_netfilter`` is in the kernel, how, and where it is made persistent; and what the
migration recorded of the persistence files before it edited them.
"""

from __future__ import annotations

import posixpath
from urllib.parse import quote

from pyinfra.api import FactBase, FactProcessError

from facts.shell import script_command, source

MODULE = "br_netfilter"
# A line that loads the module: its name alone, maybe padded (comments start with # or ;). The
# persistence files systemd-modules-load reads, where the facts look for it, are listed in
# br_netfilter.sh.
PERSISTENCE_LINE_REGEX = f"^[[:space:]]*{MODULE}[[:space:]]*$"

# A record's file name ends so; retired ones continue as facts.records names them.
RECORD_SUFFIX = ".record"


def record_name(path: str) -> str:
    """The record's file name for ``path``: the whole path, so that no two paths share one
    (``/etc/modules`` is ``etc%2Fmodules.record``)."""
    return quote(path.lstrip("/"), safe="") + RECORD_SUFFIX


def parse_descriptions(lines, markers=()) -> tuple[dict[str, list[str]], list[dict]]:
    """Split describe.sh's output (with other ``key=value`` lines around it) into the other
    lines' values by key and one dict a described path.

    A line whose key is in ``markers`` tags the description that follows it (``record=NAME``).
    """
    others: dict[str, list[str]] = {}
    described: list[dict] = []
    tags: dict[str, str] = {}
    current = None
    for line in lines:
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if tags and key != "path":
            raise FactProcessError(f"{', '.join(tags.values())}: no description follows")
        if key == "path":
            current = {"path": value, "type": "missing", **tags}
            described.append(current)
            tags = {}
        elif key in markers:
            tags[key] = value
        elif (
            key in ("type", "owner", "target", "resolved", "sha256", "stripped_sha256") and current
        ):
            current[key] = value
        elif key == "mode" and current:
            current["mode"] = value.zfill(4)
        elif key == "module_line" and current:
            number, _, text = value.partition(":")
            current.setdefault("module_lines", []).append({"line": int(number), "text": text})
        else:
            others.setdefault(key, []).append(value)
    if tags:
        raise FactProcessError(f"{', '.join(tags.values())}: no description follows")
    for entry in described:
        if entry["type"] == "file":
            entry.setdefault("module_lines", [])
    return others, described


def _files(described: list[dict]) -> dict[str, dict]:
    return {
        entry["path"]: {key: value for key, value in entry.items() if key != "path"}
        for entry in described
        if entry["type"] != "missing"
    }


class BrNetfilter(FactBase):
    """
    Returns how ``br_netfilter`` is present in the running kernel, every file that loads it at
    boot, and what each of those files is.

    + paths: more paths to describe in ``files`` (the rollback's recorded ones)

    ``status`` is ``module`` (loaded, listed in ``/proc/modules``), ``builtin`` (active but
    compiled in, so it cannot be unloaded) or ``absent``. ``module_support`` is False on a
    kernel without loadable modules (no ``/proc/modules``). ``persisted_in`` lists the
    persistence files that load the module, a symlink as well as the file it points to.
    ``files`` describes them, the files their symlinks resolve to, and ``paths``; a path that
    does not exist is left out.

    .. code:: python

        {
            "status": "builtin",
            "module_support": False,
            "persisted_in": ["/etc/modules-load.d/modules.conf", "/etc/modules"],
            "files": {
                "/etc/modules-load.d/modules.conf": {
                    "type": "symlink", "owner": "0:0", "target": "../modules", "resolved": "/etc/modules",
                },
                "/etc/modules": {
                    "type": "file", "mode": "0640", "owner": "0:0",
                    "sha256": "5f1c…", "stripped_sha256": "0e7a…",
                    "module_lines": [{"line": 3, "text": "br_netfilter"}],
                },
            },
        }
    """

    @staticmethod
    def default():
        return {"status": "absent", "module_support": True, "persisted_in": [], "files": {}}

    def command(self, paths=()):
        return script_command(
            "facts",
            "br_netfilter.sh",
            source("facts", "describe.sh"),
            MODULE,
            PERSISTENCE_LINE_REGEX,
            *paths,
        )

    def process(self, output):
        others, described = parse_descriptions(output)
        state = self.default()
        state["module_support"] = others.get("module_support") == ["yes"]
        state["status"] = (others.get("status") or ["absent"])[-1]
        if others.get("active") and state["status"] != "module":
            state["status"] = "builtin"
        state["persisted_in"] = others.get("persisted", [])
        state["files"] = _files(described)
        return state


# What a record must hold to be given back, by the type it records.
RECORDED = {"file": ("mode", "owner", "sha256", "stripped_sha256"), "symlink": ("owner", "target")}


class BrNetfilterBackups(FactBase):
    """
    Returns what :func:`operations.br_netfilter.br_netfilter_absent` kept in the backup
    directory: its records by the path each describes, and its copies by file name.

    + backup_dir: the directory ``br_netfilter_absent`` kept them in

    A record (``<path, %-quoted>.record``) describes a persistence file as it was right before
    the migration first removed the module's lines from it, in :class:`BrNetfilter`'s ``files``
    shape, with its own ``name``. Each copy (``NAME``, older ones ``NAME.~N~``) is a file's
    content before one such edit, described the same way; a record's copy is the one with its
    SHA-256. Retired records (``….record.~restored-…~``) and temporary files are left out.

    .. code:: python

        {
            "records": {
                "/etc/modules": {
                    "name": "etc%2Fmodules.record",
                    "type": "file", "mode": "0640", "owner": "0:0",
                    "sha256": "5f1c…", "stripped_sha256": "0e7a…",
                    "module_lines": [{"line": 3, "text": "br_netfilter"}],
                },
            },
            "copies": {
                "modules": {
                    "type": "file", "mode": "0640", "owner": "0:0",
                    "sha256": "5f1c…", "stripped_sha256": "0e7a…",
                    "module_lines": [{"line": 3, "text": "br_netfilter"}],
                },
            },
        }
    """

    @staticmethod
    def default():
        return {"records": {}, "copies": {}}

    def command(self, backup_dir: str):
        return script_command(
            "facts",
            "br_netfilter_backups.sh",
            source("facts", "describe.sh"),
            PERSISTENCE_LINE_REGEX,
            backup_dir,
            RECORD_SUFFIX,
        )

    def process(self, output):
        _, described = parse_descriptions(output, markers=("record",))
        found = self.default()
        for entry in described:
            fields = {key: value for key, value in entry.items() if key not in ("path", "record")}
            if "record" in entry:
                required = RECORDED.get(entry["type"])
                missing = [
                    key for key in required or ("type",) if required is None or key not in fields
                ]
                if missing:
                    # Guessing would give a file content or a mode nobody chose: stop instead.
                    raise FactProcessError(
                        f"{entry['record']} is not a record the migration wrote: no {', '.join(missing)}"
                    )
                found["records"][entry["path"]] = {"name": entry["record"], **fields}
            elif entry["type"] == "file":
                found["copies"][posixpath.basename(entry["path"])] = fields
        return found

"""
The migration's records, written once before the first change and retired by the rollback:
one way for every operation that keeps one (units, CNI files, br_netfilter persistence).
"""

from __future__ import annotations

import shlex

from facts.records import RETIRED_INFIX
from facts.shell import script_command


def written_once(path: str, *command: str, existing_ok: bool = True) -> str:
    """A shell command that writes what ``command`` (its words) prints to ``path``, unless a
    record is there already (written_once.sh).

    Written whole under a hidden temporary name beside it, on disk, then hard-linked: the record
    appears complete or not at all, and ``ln`` never replaces one. A record that is there was
    taken before this run's first change (an earlier migration not rolled back yet, or a run
    beside this one): it stands, and the command succeeds, or with ``existing_ok=False`` fails,
    for an operation whose next commands must not run on another run's record.
    """
    return script_command(
        "operations", "written_once.sh", "yes" if existing_ok else "no", path, *command
    )


def text_written_once(path: str, text: str, existing_ok: bool = True) -> str:
    """:func:`written_once` for a record whose text is known here."""
    return written_once(path, "printf", "%s\\n", text, existing_ok=existing_ok)


def retired(path: str) -> str:
    """A shell command that renames the record aside as given back (``facts.records``): kept as
    the account of what was restored, its own name free for the next migration's."""
    record = shlex.quote(path)
    return (
        f"mv --backup=numbered -- {record} "
        f"{shlex.quote(path + RETIRED_INFIX)}\"$(date -u +%Y%m%dT%H%M%SZ)\"'~'"
    )

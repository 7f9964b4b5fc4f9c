"""
The rule for the node's directories, in one place: kubelet's CNI directory and the backup
directories where the migration keeps what it moves must be absolute and distinct, and no backup
may lie inside the CNI directory (kubelet would load the kept configurations from there).

The deploy's data check (``deploys/support/data.py``) applies it to the data, naming the keys;
the CNI operations apply it to their own two arguments, as they can be used alone.
"""

from __future__ import annotations

import posixpath

# The key of kubelet's CNI directory; the others are backups.
CONF_DIR = "cni_conf_dir"


def directory_problems(dirs: dict[str, str]) -> list[str]:
    """What is wrong with the node's directories (``{data key: path}``), one line each."""
    problems = [
        f"{key} {path!r} is not an absolute path: give the full path on the node"
        for key, path in dirs.items()
        if not isinstance(path, str) or not posixpath.isabs(path)
    ]
    if problems:
        return problems
    norm = {key: posixpath.normpath(path) for key, path in dirs.items()}
    conf = norm.get(CONF_DIR)
    for i, (key, path) in enumerate(norm.items()):
        for other, other_path in list(norm.items())[:i]:
            if path == other_path:
                problems.append(f"{key} and {other} are both {path}: give each its own directory")
        if key != CONF_DIR and conf and (path + "/").startswith(conf + "/") and path != conf:
            problems.append(
                f"{key} {path} is inside {CONF_DIR} {conf}, where kubelet reads every file: "
                "put it outside"
            )
    return problems

"""
The longer shell scripts of the facts and operations: ``.sh`` files beside their modules,
shipped as package data, that ``shellcheck`` reads (``make lint``).

Each runs as ``sh -c "$script" NAME ARG...``: its arguments are positional parameters, quoted
once here, never pasted into its text, and the script's own text is quoted once as a whole. It
stays one command, so a fact or an operation's step is still one round trip.
"""

from __future__ import annotations

import functools
import shlex
from importlib import resources


@functools.cache
def source(package: str, name: str) -> str:
    """The text of ``name`` (``cni_state.sh``) in ``package`` (``facts``, ``operations``)."""
    return resources.files(package).joinpath(name).read_text()


def script_argv(package: str, name: str, *args) -> list[str]:
    """The words of the command that runs the script ``name`` of ``package`` with ``args``."""
    return ["sh", "-c", source(package, name), name, *(str(arg) for arg in args)]


def script_command(package: str, name: str, *args) -> str:
    """The command that runs the script ``name`` of ``package`` with ``args``, quoted."""
    return shlex.join(script_argv(package, name, *args))

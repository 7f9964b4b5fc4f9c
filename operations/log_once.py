"""
Logging once per run from inside an operation.

pyinfra runs an operation's generator once to detect changes and again to execute them (once
only with ``-y``); a message logged on every pass would be printed twice. ``host.noop`` suits
"nothing to do"; what an operation says while it changes something goes through :func:`log_once`.
"""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api.state import StateStage


def first_pass() -> bool:
    """Whether pyinfra runs the current operation's generator for the first time in this run.

    Without ``-y`` (and with ``--dry``) it runs once to detect changes, then again to execute;
    with ``-y`` only to execute.
    """
    state = host.state
    if state.current_stage == StateStage.Prepare:
        return True
    return not state.should_check_for_changes()


def log_once(message: str, warn: bool = False) -> None:
    """Log ``message`` for the current host, on the generator's first pass only."""
    if first_pass():
        (logger.warning if warn else logger.info)(f"{host.print_prefix}{message}")

"""
What an upgrade of a release that is already there may do: the version step, the values it
changes (per dotted key), the values it would drop that a hand-made revision set, and a release
helm left pending. Plain data in, lines or a ClusterError out; helm's answers come from
:mod:`cilium_lab.cluster.helm`.

Cilium supports upgrades one minor at a time (its upgrade guide, with its pre-flight check) and no
downgrade, so the deploy refuses anything else before the first change, unless the group data's
``cilium_release_takeover`` says the user knows better.
"""

from __future__ import annotations

import json
import re

from cilium_lab.cluster import ClusterError
from cilium_lab.cluster.helm_args import DESCRIPTION_PREFIX

TAKEOVER = "cilium_release_takeover = True in inventories/group_data/local.py"
UNSET = "(unset)"

_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)(.*)")


def parse_version(version: str) -> tuple[int, int, int, str] | None:
    found = _VERSION.fullmatch(str(version or ""))
    if not found:
        return None
    major, minor, patch, rest = found.groups()
    return int(major), int(minor), int(patch), rest


def _order(parsed) -> tuple:
    # A pre-release (1.20.0-pre.1) comes before its release (1.20.0).
    major, minor, patch, rest = parsed
    return (major, minor, patch, 0 if rest else 1, rest)


def version_step(installed: str, desired: str) -> str:
    """``same``, ``patch`` (up within a minor), ``minor`` (one minor up), ``skip`` (more than one
    minor up, or another major), ``downgrade``, or ``unknown`` (not a semantic version)."""
    old, new = parse_version(installed), parse_version(desired)
    if old is None or new is None:
        return "same" if installed == desired else "unknown"
    if _order(old) == _order(new):
        return "same"
    if _order(new) < _order(old):
        return "downgrade"
    if old[0] != new[0] or new[1] - old[1] > 1:
        return "skip"
    return "minor" if new[1] == old[1] + 1 else "patch"


def version_problem(release: str, installed: dict, chart_name: str, version: str) -> str | None:
    """Why the pinned chart may not replace the installed release, in one line; None if it may."""
    name = installed.get("chart")
    old = installed.get("version")
    override = f"or set {TAKEOVER} to take it over anyway"
    if chart_name and name and name != chart_name:
        return (
            f"release {release} is chart {name} {old}, not {chart_name}: it is another chart's "
            f"release; uninstall it or give cilium_release another name, {override}"
        )
    if not version or not old:
        return None
    step = version_step(old, version)
    if step == "downgrade":
        return (
            f"release {release} runs chart {name} {old}, newer than the pinned {version}: Cilium "
            f"does not support downgrades; pin cilium_chart_version {old} or later, {override}"
        )
    if step == "skip":
        parsed = parse_version(old)
        next_minor = f"{parsed[0]}.{parsed[1] + 1}"
        return (
            f"release {release} runs chart {name} {old}, and the pinned {version} is more than "
            f"one minor up: Cilium upgrades one minor at a time; pin a {next_minor}.x release "
            f"first, run the deploy, and go on minor by minor, {override}"
        )
    if step == "unknown":
        return (
            f"release {release} runs chart {name} {old}, and the pinned {version} cannot be "
            f"compared with it; pin a version like 1.19.6, {override}"
        )
    return None


def leaves(values, prefix: str = "") -> dict[str, object]:
    """Dotted key -> value for every leaf of a values tree (an empty map and a list are leaves)."""
    found: dict[str, object] = {}
    for key, value in (values or {}).items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            found.update(leaves(value, path + "."))
        else:
            found[path] = value
    return found


def shown(value) -> str:
    """A value as a dry run shows it: short scalars whole, never a whole mapping."""
    if value is UNSET:
        return UNSET
    text = json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, (dict, list)) and len(text) > 40:
        return f"<{type(value).__name__} of {len(value)} items>"
    return text if len(text) <= 60 else text[:57] + "..."


def value_changes(installed, desired) -> list[str]:
    """One line per dotted key whose value the upgrade changes, old -> new."""
    old, new = leaves(installed), leaves(desired)
    lines = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key, UNSET), new.get(key, UNSET)
        if before != after:
            if after is UNSET:
                after = "(the chart's default)"
                lines.append(f"value {key}: {shown(before)} -> {after}")
            else:
                lines.append(f"value {key}: {shown(before)} -> {shown(after)}")
    return lines


def dropped_keys(installed, desired) -> list[str]:
    """The dotted keys the installed values set and the wanted ones do not hold at all."""
    new = leaves(desired)
    return sorted(
        key
        for key in leaves(installed)
        if key not in new and not any(key.startswith(k + ".") for k in new)
    )


def ours(entry: dict, history: list[dict]) -> bool:
    """Whether a revision of ``helm history`` is one this project made, or a rollback to one."""
    description = entry.get("description") or ""
    if description.startswith(DESCRIPTION_PREFIX):
        return True
    rolled = re.fullmatch(r"Rollback to (\d+)", description)
    if rolled:
        target = next((e for e in history if e.get("revision") == int(rolled.group(1))), None)
        return target is not None and target is not entry and ours(target, history)
    return False


def hand_set(dropped: list[str], installed, history: list[dict], our_values=None) -> list[str]:
    """Of the dropped keys, those a hand-made revision set: none when the current revision is
    ours; else all of them, less those our own last revision (``our_values``) set to the same
    value (a hand ``--reuse-values`` upgrade carried them over)."""
    if not dropped or (history and ours(history[-1], history)):
        return []
    now, mine = leaves(installed), leaves(our_values)
    return [key for key in dropped if mine.get(key, UNSET) != now[key]]


def last_ours(history: list[dict]) -> int | None:
    """The newest revision this project made, if any."""
    found = [e["revision"] for e in history if ours(e, history)]
    return found[-1] if found else None


def hand_set_problem(release: str, keys: list[str]) -> str:
    return (
        f"release {release} has values set by hand that cilium_values does not hold: "
        f"{', '.join(keys)}; the upgrade would drop them (helm get values shows them): add them "
        f"to cilium_values to keep them, or set {TAKEOVER} to drop them"
    )


def earlier_revision(history: list[dict], revision: int | None) -> int | None:
    """The newest revision before ``revision`` that helm completed (deployed or superseded)."""
    done = [
        e["revision"]
        for e in history
        if e.get("status") in ("deployed", "superseded")
        and (revision is None or e["revision"] < revision)
    ]
    return done[-1] if done else None


def way_back(release: str, namespace: str, history: list[dict], revision: int | None) -> str:
    """The helm command that puts a pending or failed release back to its last good revision."""
    earlier = earlier_revision(history, revision)
    if earlier is None:
        return f"helm uninstall {release} -n {namespace}"
    return f"helm rollback {release} {earlier} -n {namespace}"


def pending_problem(release: str, namespace: str, installed: dict, history: list[dict]) -> str:
    return (
        f"release {namespace}/{release} is {installed['status']} (revision "
        f"{installed['revision']}): a helm run on it never finished, and helm refuses another "
        f"until it is undone; run `{way_back(release, namespace, history, installed['revision'])}`, "
        "then the deploy again"
    )


def refuse(problem: str | None, takeover: bool) -> str | None:
    """Raise the problem, unless the group data takes the release over; then it is a warning
    line of the plan."""
    if problem is None:
        return None
    if not takeover:
        raise ClusterError(problem)
    return f"{problem.split('; ')[0]}; taken over, as cilium_release_takeover says"

"""
Every key of ``cilium_values`` must be a key of the chart's own values: Cilium's values schema
does not reject unknown keys, so helm would install the release and ignore a misspelt one (the
seed's ``cgroup.automount.enabled`` is one: the chart's key is ``cgroup.autoMount.enabled``).

The chart's keys come from the chart itself (``helm show values``), kept per chart name and
version under ``$XDG_CACHE_HOME/cilium-lab/chart-keys/`` (default ``~/.cache``), so a second
check of the same chart runs no helm.

What a key may hold below it is read from its default: a non-empty map lists its keys; an empty
map, a null, a list or a map of label keys (``nodeSelector``'s ``kubernetes.io/os``) is
free-form, so anything below it is the user's (``podAnnotations``, ``extraConfig``, …).
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

import yaml

from cilium_lab.cluster import ClusterError

# The shape's marker for a key whose default takes anything below it.
FREE = "*"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cilium-lab" / "chart-keys"


def _free_form(default) -> bool:
    if not isinstance(default, dict):
        return True
    return not default or all("/" in str(key) for key in default)


def shape(defaults) -> dict:
    """The chart's values reduced to their keys: a map for a map of known keys, ``FREE`` for a
    free-form one, ``""`` for a scalar."""
    found = {}
    for key, default in (defaults or {}).items():
        if isinstance(default, dict) and not _free_form(default):
            found[str(key)] = shape(default)
        elif isinstance(default, dict) or default is None or isinstance(default, list):
            found[str(key)] = FREE
        else:
            found[str(key)] = ""
    return found


def closest(key: str, known) -> str | None:
    known = list(known)
    by_case = [k for k in known if k.lower() == key.lower()]
    if by_case:
        return by_case[0]
    found = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_keys(values, chart_shape: dict, prefix: str = "") -> list[tuple[str, str | None]]:
    """(dotted key, closest known dotted key or None) for each key the chart does not know."""
    found = []
    for key, value in (values or {}).items():
        path = f"{prefix}{key}"
        if key not in chart_shape:
            near = closest(str(key), chart_shape)
            found.append((path, f"{prefix}{near}" if near else None))
            continue
        below = chart_shape[key]
        # A map given where the chart has a scalar is helm's to judge (its schema has the types).
        if isinstance(value, dict) and isinstance(below, dict):
            found += unknown_keys(value, below, path + ".")
    return found


def known(dotted: str, chart_shape: dict) -> bool:
    """Whether the chart knows a dotted key (anything below a free-form key is known)."""
    below = chart_shape
    for part in dotted.split("."):
        if below == FREE:
            return True
        if not isinstance(below, dict) or part not in below:
            return False
        below = below[part]
    return True


def problems(values, chart_shape: dict, chart: str) -> list[str]:
    """One line per unknown key, naming the closest known key."""
    lines = []
    for key, near in unknown_keys(values, chart_shape):
        hint = f"did you mean {near}?" if near else "no key is close; helm show values lists them"
        lines.append(
            f"cilium_values key {key} is not a key of chart {chart} ({hint}); helm would "
            "ignore it: fix it in cilium_values"
        )
    return lines


def chart_shape(name: str, version: str | None, read_values) -> dict:
    """The chart's shape, from the cache when this name and version were read before; else from
    ``read_values()`` (the chart's values.yaml text), then kept. An unversioned chart is read
    each time: its keys can change."""
    path = cache_dir() / f"{name}-{version}.json" if name and version else None
    if path is not None:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            pass
    try:
        defaults = yaml.safe_load(read_values()) or {}
    except yaml.YAMLError as error:
        raise ClusterError(f"the values of chart {name} {version} are not YAML: {error}") from None
    if not isinstance(defaults, dict):
        raise ClusterError(f"the values of chart {name} {version} are not a mapping")
    found = shape(defaults)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(found, sort_keys=True))
            tmp.replace(path)
        except OSError:
            pass  # no cache: the next check reads the chart again
    return found


def check(values, shape: dict, chart: str) -> None:
    """Refuse unknown keys, all of them in one line."""
    found = problems(values, shape, chart)
    if found:
        raise ClusterError("; ".join(found) if len(found) > 1 else found[0])

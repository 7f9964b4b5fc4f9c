"""
The user's ``helm`` binary: find it, read releases and repositories, check a chart and its
values. Only reads; the operations build and yield the changing commands (``helm repo
add/update``, ``helm upgrade --install``, ``helm uninstall``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from cilium_lab.cluster import ClusterError
from cilium_lab.cluster.helm_args import chart_kind, helm_cluster_flags, local_chart

TIMEOUT = 300  # seconds for one read-only helm command (chart downloads included)


def find_helm() -> str:
    """helm on PATH, else beside this Python (a venv's bin/, where scripts/install_helm.py puts it)."""
    found = shutil.which("helm") or shutil.which("helm", path=str(Path(sys.executable).parent))
    if not found:
        raise ClusterError(
            "helm is not installed: no `helm` on PATH or in "
            f"{Path(sys.executable).parent}; install it (https://helm.sh/docs/intro/install/ "
            "or scripts/install_helm.py)"
        )
    return found


def helm_error(result: subprocess.CompletedProcess) -> str:
    """helm's own message, on one line, without its 'Error: ' prefix."""
    lines = [
        line.strip() for line in (result.stderr or result.stdout or "").splitlines() if line.strip()
    ]
    first = next((i for i, line in enumerate(lines) if line.startswith("Error:")), None)
    text = (
        " ".join(lines[first:] if first is not None else lines[-2:])
        or f"exit status {result.returncode}"
    )
    text = re.sub(r"^Error:\s*", "", text)
    return text if len(text) <= 400 else text[:397] + "..."


def run(helm: str, args: list[str], input: str | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            [helm, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise ClusterError(f"`helm {' '.join(args[:3])}` did not finish in {TIMEOUT}s") from None
    except OSError as error:
        raise ClusterError(f"cannot run {helm}: {error.strerror}") from None


def no_release() -> dict:
    """The release's state when helm lists none (:func:`release`)."""
    return {
        "exists": False,
        "status": None,
        "chart": None,
        "version": None,
        "revision": None,
        "values": None,
    }


def release(helm: str, name: str, namespace: str, kubeconfig=None, context=None) -> dict:
    """The installed release as helm reports it: status, chart, version, revision, values."""
    state = no_release()
    cluster = helm_cluster_flags(kubeconfig, context)
    listed = run(
        helm,
        [
            "list",
            "--namespace",
            namespace,
            "--deployed",
            "--failed",
            "--pending",
            "--filter",
            f"^{re.escape(name)}$",
            "--output",
            "json",
            *cluster,
        ],
    )
    if listed.returncode != 0:
        raise ClusterError(f"helm cannot list releases in {namespace}: {helm_error(listed)}")
    releases = [r for r in json.loads(listed.stdout or "[]") if r.get("name") == name]
    if not releases:
        return state
    found = releases[0]
    chart, _, version = found.get("chart", "").rpartition("-")
    state.update(
        exists=True,
        status=found.get("status"),
        chart=chart,
        version=version,
        revision=int(found.get("revision") or 0),
    )
    values = run(
        helm, ["get", "values", name, "--namespace", namespace, "--output", "json", *cluster]
    )
    if values.returncode != 0:
        raise ClusterError(
            f"helm cannot read the values of {namespace}/{name}: {helm_error(values)}"
        )
    state["values"] = json.loads(values.stdout or "null") or {}
    return state


def repositories(helm: str) -> dict[str, str]:
    """name -> URL of the repositories helm knows."""
    result = run(helm, ["repo", "list", "--output", "json"])
    if result.returncode != 0:
        if "no repositories" in (result.stderr + result.stdout):
            return {}
        raise ClusterError(f"helm cannot list its repositories: {helm_error(result)}")
    return {r["name"]: r["url"] for r in json.loads(result.stdout or "[]")}


class Repositories:
    """``helm repo list``, read once and shared by the threads of one cluster read (the
    repository check and the release's chart source): a read adds no repository, so a second
    ``helm repo list`` would say the same."""

    def __init__(self):
        self._lock = threading.Lock()
        self._known: dict[str, str] | None = None

    def __call__(self, helm: str) -> dict[str, str]:
        with self._lock:
            if self._known is None:
                self._known = repositories(helm)
            return self._known


def repository(
    helm: str,
    name: str,
    url: str,
    chart: str,
    version: str | None,
    known: Repositories | None = None,
) -> dict:
    """Whether the repository is there with this URL, and its cached index has the version."""
    # A plain search (helm's --regexp also matches the description), filtered to the exact name.
    args = ["search", "repo", chart, "--output", "json"]
    if version:
        args += ["--version", version]
    # The search reads only helm's cached indexes, so it runs beside the listing instead of
    # after it; its answer counts only for a repository listed with this URL.
    with ThreadPoolExecutor(max_workers=1) as pool:
        searched = pool.submit(run, helm, args)
        listed = known(helm) if known else repositories(helm)
        result = searched.result()
    state = {
        "name": name,
        "url": listed.get(name),
        "present": name in listed,
        "url_matches": _same_url(listed.get(name), url),
        "version_cached": False,
    }
    if state["present"] and state["url_matches"] and result.returncode == 0:
        state["version_cached"] = any(
            r.get("name") == chart and (not version or r.get("version") == version)
            for r in json.loads(result.stdout or "[]")
        )
    return state


def _same_url(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and a.rstrip("/") == b.rstrip("/")


def chart_source(
    helm: str,
    chart: str,
    repo_name: str | None,
    repo_url: str | None,
    known: Repositories | None = None,
) -> list[str]:
    """How helm finds the chart now: ``repo/chart``, or ``chart --repo URL`` before the repo is added."""
    if chart_kind(chart) != "repo":
        return [str(Path(chart).expanduser()) if not chart.startswith("oci://") else chart]
    name, _, short = chart.partition("/")
    listed = known(helm) if known else repositories(helm)
    if name == repo_name and repo_url and not _same_url(listed.get(name), repo_url):
        return [short, "--repo", repo_url]
    return [chart]


def _versioned(source: list[str]) -> bool:
    """Whether helm takes --version for this source: anything but a local chart (a source of
    ``chart --repo URL`` names a repository's chart by its short name)."""
    return not (len(source) == 1 and local_chart(source[0]))


def chart_version(helm: str, source: list[str], version: str | None) -> str:
    """The chart's version, checked against the pinned one; errors name the chart."""
    return chart_metadata(helm, source, version)[1]


def chart_metadata(helm: str, source: list[str], version: str | None) -> tuple[str, str]:
    """The chart's name and version, the version checked against the pinned one."""
    args = ["show", "chart", *source]
    if version and _versioned(source):
        args += ["--version", version]
    result = run(helm, args)
    if result.returncode != 0:
        what = f"chart {' '.join(source)}" + (f" version {version}" if version else "")
        raise ClusterError(f"{what} not found: {helm_error(result)}")
    metadata = yaml.safe_load(result.stdout) or {}
    found = str(metadata.get("version", ""))
    if version and found != version:
        raise ClusterError(
            f"chart {source[0]} is version {found}, but cilium_chart_version pins {version}; "
            "change one of them"
        )
    return str(metadata.get("name", "")), found


def chart_values(helm: str, source: list[str], version: str | None) -> str:
    """The chart's own values.yaml, as ``helm show values`` prints it."""
    args = ["show", "values", *source]
    if version and _versioned(source):
        args += ["--version", version]
    result = run(helm, args)
    if result.returncode != 0:
        raise ClusterError(
            f"helm cannot show the values of chart {source[0]}: {helm_error(result)}"
        )
    return result.stdout


def history(helm: str, name: str, namespace: str, kubeconfig=None, context=None) -> list[dict]:
    """The release's revisions, oldest first: revision, status, chart, description, updated;
    none for a release helm does not know."""
    result = run(
        helm,
        [
            "history",
            name,
            "--namespace",
            namespace,
            "--output",
            "json",
            *helm_cluster_flags(kubeconfig, context),
        ],
    )
    if result.returncode != 0:
        if "not found" in (result.stderr or ""):
            return []
        raise ClusterError(
            f"helm cannot read the history of {namespace}/{name}: {helm_error(result)}"
        )
    try:
        entries = json.loads(result.stdout or "[]")
    except ValueError:
        raise ClusterError(f"helm's history of {namespace}/{name} is not JSON") from None
    for entry in entries:
        entry["revision"] = int(entry.get("revision") or 0)
    return sorted(entries, key=lambda e: e["revision"])


def revision_values(
    helm: str, name: str, namespace: str, revision: int, kubeconfig=None, context=None
) -> dict:
    """The values one revision of the release was given."""
    result = run(
        helm,
        [
            "get",
            "values",
            name,
            "--namespace",
            namespace,
            "--revision",
            str(revision),
            "--output",
            "json",
            *helm_cluster_flags(kubeconfig, context),
        ],
    )
    if result.returncode != 0:
        raise ClusterError(
            f"helm cannot read the values of {namespace}/{name} revision {revision}: "
            f"{helm_error(result)}"
        )
    return json.loads(result.stdout or "null") or {}


def check_values(
    helm: str,
    source: list[str],
    version: str | None,
    values: dict,
    release_name: str,
    namespace: str,
) -> None:
    """Render the chart with the values, offline: helm rejects ill-typed values here (the chart's
    schema; unknown keys pass it, :mod:`chart_keys` finds those)."""
    args = ["template", release_name, *source, "--namespace", namespace, "--values", "-"]
    if version and _versioned(source):
        args += ["--version", version]
    result = run(helm, args, input=json.dumps(values))
    if result.returncode != 0:
        raise ClusterError(f"helm rejects the values for chart {source[0]}: {helm_error(result)}")

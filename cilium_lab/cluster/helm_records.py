"""
helm's own records of one release, read where helm keeps them: one Secret a revision in the
release's namespace (helm's default storage driver), or one ConfigMap with
``HELM_DRIVER=configmap``, each labelled ``owner=helm`` and ``name=<release>``, its ``release``
key the revision as gzipped JSON in base64. One API request answers what ``helm list``,
``helm get values`` and ``helm history`` say, without starting helm three times a read.

Another driver (``sql``, ``memory``) is read through helm itself (:mod:`cilium_lab.cluster.helm`),
with the same answers. tests/cluster/test_cluster_helm_records.py holds the two readings against
each other on a real cluster.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import os
import threading

from kubernetes.client.rest import ApiException

from cilium_lab.cluster import ClusterError, helm
from cilium_lab.cluster.kube import Cluster

# The statuses `helm list --deployed --failed --pending` shows, of a release's last revision.
LISTED = ("deployed", "failed", "pending-install", "pending-upgrade", "pending-rollback")


def storage() -> str | None:
    """Where helm keeps releases, as $HELM_DRIVER says: ``secrets`` or ``configmaps``; None for
    a driver only helm reads."""
    driver = os.environ.get("HELM_DRIVER", "").strip().lower()
    if driver in ("", "secret", "secrets"):
        return "secrets"
    if driver in ("configmap", "configmaps"):
        return "configmaps"
    return None


def decode(item: dict, kind: str, where: str) -> dict:
    """A record's revision: its ``release`` key decoded as helm encodes it (base64 of gzipped
    JSON, which a Secret's data wraps in base64 once more)."""
    text = (item.get("data") or {}).get("release")
    try:
        raw = base64.b64decode(text, validate=True)
        if kind == "secrets":
            raw = base64.b64decode(raw, validate=True)
        if raw[:3] == b"\x1f\x8b\x08":
            raw = gzip.decompress(raw)
        return json.loads(raw)
    except (TypeError, ValueError, binascii.Error, OSError, EOFError):
        name = (item.get("metadata") or {}).get("name")
        raise ClusterError(
            f"helm's record {name} of {where} cannot be read (not helm's encoding): check it "
            "with `helm history`"
        ) from None


def _revision(item: dict) -> int:
    labels = (item.get("metadata") or {}).get("labels") or {}
    try:
        return int(labels.get("version", 0))
    except ValueError:
        return 0


class ReleaseRecords:
    """One release's records, read once and shared by the threads of one cluster read.

    + cluster: the API the records are read from (None: through helm)
    + helm_path: helm, for a driver only helm reads (None: found when needed)
    """

    def __init__(
        self,
        cluster: Cluster | None,
        helm_path: str | None,
        name: str,
        namespace: str,
        kubeconfig=None,
        context=None,
    ):
        self.cluster = cluster
        self.helm = helm_path
        self.name = name
        self.namespace = namespace
        self.kubeconfig = kubeconfig
        self.context = context
        self.kind = storage() if cluster is not None else None
        self._lock = threading.Lock()
        self._items: list[dict] | None = None
        self._decoded: dict[int, dict] = {}

    def _helm(self) -> str:
        return self.helm or helm.find_helm()

    @property
    def where(self) -> str:
        return f"{self.namespace}/{self.name}"

    def _records(self) -> list[dict]:
        """The release's records, oldest revision first."""
        with self._lock:
            if self._items is None:
                selector = f"owner=helm,name={self.name}"
                path = f"/api/v1/namespaces/{self.namespace}/{self.kind}"
                try:
                    items = self.cluster.get(path, labelSelector=selector).get("items", [])
                except ApiException as error:
                    raise ClusterError(
                        f"helm's records of {self.where} cannot be read on {self.cluster.server}: "
                        f"{error.status} {error.reason}"
                    ) from None
                self._items = sorted(items, key=_revision)
            return self._items

    def _body(self, item: dict) -> dict:
        revision = _revision(item)
        with self._lock:
            if revision not in self._decoded:
                self._decoded[revision] = decode(item, self.kind, self.where)
            return self._decoded[revision]

    def release(self) -> dict:
        """The release as ``helm list`` and ``helm get values`` report it (:func:`helm.release`):
        its last revision, when that is deployed, failed or pending."""
        if self.kind is None:
            return helm.release(
                self._helm(), self.name, self.namespace, self.kubeconfig, self.context
            )
        state = helm.no_release()
        records = self._records()
        if not records:
            return state
        body = self._body(records[-1])
        status = (body.get("info") or {}).get("status")
        if status not in LISTED:
            return state
        metadata = (body.get("chart") or {}).get("metadata") or {}
        state.update(
            exists=True,
            status=status,
            chart=metadata.get("name"),
            version=metadata.get("version"),
            revision=int(body.get("version") or _revision(records[-1])),
            values=body.get("config") or {},
        )
        return state

    def history(self) -> list[dict]:
        """The revisions as ``helm history`` reports them (:func:`helm.history`), oldest first:
        revision, status, chart, app_version, description, updated."""
        if self.kind is None:
            return helm.history(
                self._helm(), self.name, self.namespace, self.kubeconfig, self.context
            )
        return [self._entry(item) for item in self._records()]

    def _entry(self, item: dict) -> dict:
        body = self._body(item)
        info = body.get("info") or {}
        metadata = (body.get("chart") or {}).get("metadata") or {}
        return {
            "revision": int(body.get("version") or _revision(item)),
            "updated": info.get("last_deployed"),
            "status": info.get("status"),
            "chart": f"{metadata.get('name')}-{metadata.get('version')}",
            "app_version": metadata.get("appVersion", ""),
            "description": info.get("description", ""),
        }

    def first_revision(self) -> dict | None:
        """The oldest revision helm keeps, as :meth:`history` lists it; None for no release."""
        if self.kind is None:
            history = self.history()
            return history[0] if history else None
        records = self._records()
        return self._entry(records[0]) if records else None

    def values(self, revision: int) -> dict:
        """The values one revision was given (``helm get values --revision``)."""
        if self.kind is None:
            return helm.revision_values(
                self._helm(), self.name, self.namespace, revision, self.kubeconfig, self.context
            )
        for item in self._records():
            if _revision(item) == revision:
                return self._body(item).get("config") or {}
        raise ClusterError(f"helm has no revision {revision} of {self.where}")

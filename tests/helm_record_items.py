"""helm's records of a release as the API lists them, encoded as helm encodes them (the release
as gzipped JSON in base64; a Secret's data wraps it in base64 once more), for the fast tests."""

from __future__ import annotations

import base64
import gzip
import json


def record(
    revision: int,
    status: str = "deployed",
    updated: str = "2026-11-26T11:40:00.123456789+01:00",
    config: dict | None = None,
    version: str = "1.19.6",
    description: str = "Install complete",
    kind: str = "secrets",
    name: str = "cilium",
) -> dict:
    body = {
        "name": name,
        "version": revision,
        "info": {"status": status, "last_deployed": updated, "description": description},
        "chart": {"metadata": {"name": "cilium", "version": version, "appVersion": version}},
        "config": config,
    }
    encoded = base64.b64encode(gzip.compress(json.dumps(body).encode()))
    if kind == "secrets":
        encoded = base64.b64encode(encoded)
    return {
        "metadata": {
            "name": f"sh.helm.release.v1.{name}.v{revision}",
            "labels": {"owner": "helm", "name": name, "status": status, "version": str(revision)},
        },
        "data": {"release": encoded.decode()},
    }


def listing(*records: dict) -> dict:
    return {"items": list(records)}

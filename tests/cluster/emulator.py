"""
A Kubernetes API over real HTTP for the cluster tests, without a cluster.

It stands in for kube-apiserver: kmock's ``KubernetesEmulator`` (by the author of Kopf) keeps
objects in memory and serves discovery, list, watch, get, create, patch and delete on a local
port. The code under test talks to it through the kubernetes client and a kubeconfig file, and
helm through the same file, exactly as they would talk to a cluster.

What it does NOT do, and what the tests therefore do themselves: there are no controllers and
no kubelet. The tests play them — they create the DaemonSet's pods, set node, pod, DaemonSet
and Deployment status, and recreate a controller's pod after a delete. The emulator ignores
label and field selectors (it returns every object of the resource), which the code under
test must survive; it merges patches as plain JSON (no strategic merge, no server-side apply).

kmock is asyncio-based; the client code is synchronous, so the emulator runs on its own event
loop in a background thread, and tests change objects over HTTP like any other client would.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from pathlib import Path

import kmock
import yaml


class _Emulator(kmock.KubernetesEmulator):
    """kmock 0.8's emulator, with the core group's discovery document corrected.

    kmock 0.8 serves ``/api/v1`` with ``groupVersion: "/v1"``; client-go (helm) then finds no
    kind in core v1 ("no matches for kind ConfigMap in version v1"). The real server says "v1".
    """

    async def _serve_version(self, request):
        document = await super()._serve_version(request)
        if document.get("groupVersion") == "/v1":
            document["groupVersion"] = "v1"
        return document


    async def __call__(self, raw_request):
        # client-go (helm's release storage) writes core objects as protobuf; kmock reads JSON.
        # kmock 0.8 has no PUT (replace): helm replaces its release Secrets with the same keys,
        # so a merge patch leaves the same object. aiohttp caches a read body in ``_read_bytes``:
        # the JSON version of a protobuf body is put there.
        protobuf = raw_request.content_type == PROTOBUF
        if protobuf or raw_request.method == "PUT":
            headers = dict(raw_request.headers)
            if protobuf:
                headers["Content-Type"] = "application/json"
            method = "PATCH" if raw_request.method == "PUT" else raw_request.method
            json_request = raw_request.clone(method=method, headers=headers)
            if protobuf:
                body = await json_request.read()
                json_request._read_bytes = json.dumps(decode_k8s_protobuf(body)).encode()
            raw_request = json_request
        return await super().__call__(raw_request)


    async def _handle(self, request):
        # Server-side apply (helm 4's default) creates a missing object with a PATCH; kmock 0.8
        # answers 404. Create it first; the apply then merges into it as a plain patch.
        if (
            request.method == "PATCH"
            and request.headers.get("Content-Type", "").startswith(APPLY_PATCH)
            and request.resource is not None
            and request.name is not None
            and isinstance(request.data, dict)
        ):
            key = (request.resource, request.namespace, request.name)
            async with self._lock:
                if key not in self._objects or self._objects[key].deleted:
                    body = dict(request.data)
                    body.setdefault("metadata", {})
                    if key in self._objects:
                        self._objects[key].create(body)
                    else:
                        self._objects[key] = body
                    raw = self._objects[key].last.raw
                    await self._buses[request.resource].put({"type": "ADDED", "object": raw})
        return await super()._handle(request)


PROTOBUF = "application/vnd.kubernetes.protobuf"
APPLY_PATCH = "application/apply-patch"


def _fields(data: bytes):
    """(field number, wire type, value) of one protobuf message; enough for Secret/ConfigMap."""
    i = 0

    def varint():
        nonlocal i
        shift = result = 0
        while True:
            byte = data[i]
            i += 1
            result |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return result

    while i < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, wire, varint()
        elif wire == 2:
            length = varint()
            yield number, wire, data[i:i + length]
            i += length
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"protobuf wire type {wire} is not supported here")


def _map_entry(data: bytes):
    key = value = b""
    for number, _, v in _fields(data):
        if number == 1:
            key = v
        elif number == 2:
            value = v
    return key.decode(), value


def _object_meta(data: bytes) -> dict:
    names = {1: "name", 2: "generateName", 3: "namespace", 5: "uid", 6: "resourceVersion"}
    meta: dict = {}
    for number, _, value in _fields(data):
        if number in names:
            meta[names[number]] = value.decode()
        elif number in (11, 12):
            key, v = _map_entry(value)
            meta.setdefault("labels" if number == 11 else "annotations", {})[key] = v.decode()
    return meta


def decode_k8s_protobuf(body: bytes) -> dict:
    """A v1 Secret, ConfigMap or DeleteOptions sent as Kubernetes protobuf, as the JSON the API would take."""
    if not body.startswith(b"k8s\x00"):
        raise ValueError("not a Kubernetes protobuf envelope")
    type_meta, raw = {}, b""
    for number, _, value in _fields(body[4:]):
        if number == 1:
            type_meta = {n: v.decode() for n, _, v in _fields(value)}
        elif number == 2:
            raw = value
    kind = type_meta.get(2, "")
    obj = {"apiVersion": type_meta.get(1, "v1"), "kind": kind}
    if kind == "DeleteOptions":
        # helm uninstall sends these with each delete; the emulator deletes at once whatever they say.
        for number, _, value in _fields(raw):
            if number == 1:
                obj["gracePeriodSeconds"] = value
            elif number == 4:
                obj["propagationPolicy"] = value.decode()
        return obj
    for number, _, value in _fields(raw):
        if number == 1:
            obj["metadata"] = _object_meta(value)
        elif number == 2:
            key, v = _map_entry(value)
            if kind == "Secret":
                obj.setdefault("data", {})[key] = base64.b64encode(v).decode()
            else:
                obj.setdefault("data", {})[key] = v.decode()
        elif number == 3 and kind == "Secret":
            obj["type"] = value.decode()
    if kind not in ("Secret", "ConfigMap"):
        raise ValueError(f"protobuf decoding of {kind or 'this object'} is not implemented")
    return obj


class Emulator:
    """Start with ``with Emulator(tmp_path) as api:``; ``api.kubeconfig`` is a kubeconfig file."""

    def __init__(self, directory: Path, context: str = "lab"):
        self.directory = Path(directory)
        self.context = context
        self.url = None
        self.kubeconfig = self.directory / "kubeconfig"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._stop = None

    async def _start(self):
        self.handler = _Emulator()
        self.handler.resources.load_bundled()
        await self.handler.__aenter__()
        self.server = kmock.Server(self.handler)
        await self.server.__aenter__()
        return str(self.server.url).rstrip("/")

    async def _close(self):
        await self.server.__aexit__(None, None, None)
        await self.handler.__aexit__(None, None, None)

    def __enter__(self) -> "Emulator":
        self._thread.start()
        self.url = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        self.kubeconfig.write_text(yaml.safe_dump(kubeconfig(self.url, self.context)))
        self.kubeconfig.chmod(0o600)
        return self

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def kubeconfig(server: str, context: str = "lab") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": server}}],
        "users": [{"name": context, "user": {"token": "emulated"}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "current-context": context,
    }

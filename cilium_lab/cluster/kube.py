"""
Kubernetes API clients from a kubeconfig, and API errors as one clear line.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException

from cilium_lab.cluster import ClusterError

# (connect, read) seconds for one API request; watches set their own read timeout.
REQUEST_TIMEOUT = (5, 30)


def kubeconfig_path(kubeconfig: str | None) -> Path:
    """The file the client reads: the given one, else the first of $KUBECONFIG, else ~/.kube/config."""
    if kubeconfig:
        return Path(kubeconfig).expanduser()
    env = os.environ.get("KUBECONFIG", "")
    for item in env.split(os.pathsep):
        if item and Path(item).expanduser().exists():
            return Path(item).expanduser()
    if env.split(os.pathsep)[0]:
        return Path(env.split(os.pathsep)[0]).expanduser()
    return Path("~/.kube/config").expanduser()


class Cluster:
    """The APIs the migration uses, on one client, with the server named in errors.

    Reads that only judge go through :meth:`get` as plain JSON: the typed APIs and their models
    take most of a second to import, which every deploy run would pay once per cluster fact.
    """

    def __init__(self, api_client: client.ApiClient, source: Path):
        self.api_client = api_client
        self.source = source
        self.server = api_client.configuration.host

    @functools.cached_property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api_client)

    @functools.cached_property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api_client)

    @functools.cached_property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api_client)

    def get(self, path: str, **query) -> dict:
        """GET ``path`` as JSON (the client's authentication and TLS), errors as ``call`` says them."""
        return self.call(self._get, path, **query)

    def _get(self, path: str, _request_timeout=None, **query) -> dict:
        request = self.api_client.param_serialize(
            "GET",
            path,
            query_params=[(k, v) for k, v in query.items() if v is not None],
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = self.api_client.call_api(*request, _request_timeout=_request_timeout)
        response.read()
        if not 200 <= response.status <= 299:
            raise ApiException(status=response.status, reason=response.reason, body=response.data)
        return json.loads(response.data or b"{}")

    def call(self, function, *args, **kwargs):
        """Call the API; an unreachable server or a refusal becomes a ClusterError."""
        kwargs.setdefault("_request_timeout", REQUEST_TIMEOUT)
        try:
            return function(*args, **kwargs)
        except ApiException as error:
            if error.status in (401, 403):
                raise ClusterError(
                    f"the API server {self.server} refused the credentials in {self.source} "
                    f"({error.status} {error.reason}); check the user and context"
                ) from None
            raise
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise ClusterError(
                f"cannot reach the API server {self.server} (from {self.source}): {unreachable(error)}"
            ) from None


def unreachable(error: Exception) -> str:
    """The innermost reason of a urllib3 error, without its object reprs."""
    reason = getattr(error, "reason", None) or error
    text = str(reason)
    # NewConnectionError("<urllib3.connection.HTTPConnection object at 0x..>: Failed to ...")
    if ": " in text and text.startswith("<"):
        text = text.split(": ", 1)[1]
    return text


def load(kubeconfig: str | None = None, context: str | None = None) -> Cluster:
    """A Cluster from a kubeconfig file and context (None: the file's current context)."""
    path = kubeconfig_path(kubeconfig)
    fix = "set kubeconfig in the group data (or --kubeconfig) to your cluster's file"
    if not path.exists():
        raise ClusterError(f"kubeconfig {path} does not exist; {fix}")
    if path.is_dir():
        raise ClusterError(f"kubeconfig {path} is a directory, not a file; {fix}")
    try:
        document = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise ClusterError(f"kubeconfig {path} is not a text file (not UTF-8); {fix}") from None
    except OSError as error:
        raise ClusterError(f"kubeconfig {path} cannot be read: {error.strerror}; {fix}") from None
    except yaml.YAMLError as error:
        raise ClusterError(f"kubeconfig {path} cannot be read as YAML: {one_line(error)}") from None
    if not isinstance(document, dict) or not document.get("clusters"):
        raise ClusterError(f"kubeconfig {path} is invalid: it defines no clusters")
    try:
        api_client = config.new_client_from_config(config_file=str(path), context=context or None)
    except ConfigException as error:
        raise ClusterError(f"kubeconfig {path} is invalid: {one_line(error)}") from None
    except Exception as error:  # the client's loader trips on shapes it does not expect
        raise ClusterError(
            f"kubeconfig {path} is invalid: {type(error).__name__}: {one_line(error)}"
        ) from None
    # Fail fast on an unreachable server: one retry, not urllib3's three with backoff.
    api_client.configuration.retries = 1
    api_client.rest_client.pool_manager.connection_pool_kw["retries"] = 1
    return Cluster(api_client, path)


def one_line(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:297] + "..."

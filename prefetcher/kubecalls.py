"""How the prefetcher calls the API server: each call counted, bounded, its failure a KubeError.

`ApiException` and transport errors stop here and become `KubeError`; every call is counted
per verb through `on_call`, so metrics and the report see the API traffic and its errors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from imagesync.kubeclient import KubeError, from_api_exception

Obj = dict[str, Any]
# (verb, resource, error or None): one call to the API server, for metrics.
CallHook = Callable[[str, str, KubeError | None], None]

REQUEST_TIMEOUT = (10.0, 60.0)
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"


def _transport_error(exc: Exception, what: str) -> KubeError:
    return KubeError(f"{what}: API server not reached: {exc}", status=0, reason="Unreachable")


class KubeCalls:
    """The clients of one API server and the one way the adapter calls them."""

    def __init__(
        self,
        api_client: client.ApiClient,
        namespace: str,
        *,
        pod_namespace: str = "",
        on_call: CallHook | None = None,
    ) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.pod_namespace = pod_namespace or namespace
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.coordination = client.CoordinationV1Api(api_client)
        self._on_call = on_call

    def _call(
        self,
        verb: str,
        resource: str,
        what: str,
        fn: Callable[..., Any],
        *args: Any,
        timeout: float | tuple[float, float] = REQUEST_TIMEOUT,
        **kw: Any,
    ) -> Any:
        """Call the client; count it; turn any failure into KubeError."""
        error: KubeError | None = None
        try:
            return fn(*args, _preload_content=False, _request_timeout=timeout, **kw)
        except ApiException as exc:
            error = from_api_exception(exc, what)
            raise error from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            error = _transport_error(exc, what)
            raise error from None
        finally:
            if self._on_call is not None:
                self._on_call(verb, resource, error)

    def _send(self, verb: str, resource: str, what: str, method: str, path: str, body: Obj) -> Any:
        """A write by its path, through the client's serializer and connection pool but
        without its per-call argument validation, which builds a full client model of every
        body (a V1Pod of each puller and keeper: a sixth of the process's CPU while a
        thousand nodes converge); errors as `_call`."""
        api = self.api_client
        request = api.param_serialize(
            method=method,
            resource_path=path,
            header_params={"Accept": "application/json", "Content-Type": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
        )

        def send(**options: Any) -> Any:
            response = api.call_api(*request, _request_timeout=options.get("_request_timeout"))
            if not 200 <= response.status <= 299:
                response.read()
                raise ApiException.from_response(http_resp=response, body=None, data=None)
            return response.response

        return self._call(verb, resource, what, send)

    def count(self, verb: str, resource: str, error: KubeError | None) -> None:
        """Let the informers report their list / watch calls through the same hook."""
        if self._on_call is not None:
            self._on_call(verb, resource, error)

"""The one way both components reach the API server, and the errors they see from it."""

from __future__ import annotations

import json
import os

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException


class KubeError(RuntimeError):
    """An API call that failed; `status` is the HTTP code (0 when the server was not reached)."""

    def __init__(self, message: str, status: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def gone(self) -> bool:
        return self.status == 410


def from_api_exception(exc: ApiException, what: str) -> KubeError:
    """Turn the client's exception into a KubeError whose message says what was being done."""
    reason = exc.reason or ""
    detail = ""
    body = exc.body
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body:
        try:
            status = json.loads(body)
            detail = status.get("message", "") or ""
            reason = status.get("reason", reason) or reason
        except (ValueError, AttributeError):
            detail = body[:200]
    message = f"{what}: HTTP {exc.status} {reason}" + (f": {detail}" if detail else "")
    return KubeError(message, status=int(exc.status or 0), reason=reason)


def load_api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """An ApiClient from `kubeconfig`, else `$KUBECONFIG`, else the in-cluster service account."""
    path = kubeconfig or os.environ.get("KUBECONFIG")
    configuration = client.Configuration()
    if path:
        config.load_kube_config(config_file=path, client_configuration=configuration)
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException as exc:
            raise KubeError(
                "no kubeconfig given (--kubeconfig or KUBECONFIG) and not running in a cluster: "
                f"{exc}"
            ) from None
    return client.ApiClient(configuration)

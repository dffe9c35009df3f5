"""The four CachedImage calls the learner makes, over the real `kubernetes` client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from imagesync.kubeclient import KubeError


class CachedImageStore(Protocol):
    """The four calls the learner makes; each raises KubeError (status 0: not reached)."""

    def get(self, name: str) -> dict[str, Any] | None: ...

    def create(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def replace(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def replace_status(self, body: dict[str, Any]) -> dict[str, Any]: ...


class KubeCachedImageStore:
    """CachedImageStore over the real `kubernetes` client (CustomObjectsApi)."""

    def __init__(self, api_client: Any, request_timeout: tuple[float, float] = (3.0, 10.0)) -> None:
        from kubernetes import client

        self._api = client.CustomObjectsApi(api_client)
        self._timeout = request_timeout

    def _call(self, what: str, method: Callable[..., Any], *args: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        from imagesync.kubeclient import from_api_exception
        from imagesync.names import CACHED_IMAGE_PLURAL, GROUP, VERSION

        try:
            return method(
                GROUP, VERSION, CACHED_IMAGE_PLURAL, *args, _request_timeout=self._timeout
            )
        except ApiException as exc:
            raise from_api_exception(exc, what) from None
        except (HTTPError, OSError) as exc:
            raise KubeError(f"unreachable: {what}: {exc}", status=0) from None

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self._call(
                f"get CachedImage {name}", self._api.get_cluster_custom_object, name
            )
        except KubeError as exc:
            if exc.not_found:
                return None
            raise
        return result

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        result: dict[str, Any] = self._call(
            f"create CachedImage {name}", self._api.create_cluster_custom_object, body
        )
        return result

    def replace(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        result: dict[str, Any] = self._call(
            f"update CachedImage {name}", self._api.replace_cluster_custom_object, name, body
        )
        return result

    def replace_status(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        result: dict[str, Any] = self._call(
            f"update CachedImage {name} status",
            self._api.replace_cluster_custom_object_status,
            name,
            body,
        )
        return result

"""A small list-then-watch cache of raw objects, through the `kubernetes` client.

The simulated kubelets and scheduler keep hundreds of nodes and tens of thousands of pods in
memory; decoding them into client model classes would cost more than the simulation itself,
so the informer reads the JSON (`_preload_content=False`) and keeps plain dicts. It resumes
from the last resourceVersion, relists on 410 Gone, and retries when the server goes away.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import orjson
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

JSON = dict[str, Any]
ListFunc = Callable[..., Any]

log = logging.getLogger(__name__)


def _key(obj: JSON) -> str:
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace")
    return f"{namespace}/{meta.get('name')}" if namespace else str(meta.get("name"))


class Informer:
    """Keeps `items` (key → object) in step with the API server for one list function."""

    def __init__(
        self,
        list_func: ListFunc,
        *,
        name: str,
        field_selector: str | None = None,
        page_size: int = 1000,
        watch_timeout: int = 300,
    ) -> None:
        self._list = list_func
        self.name = name
        self.field_selector = field_selector
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.items: dict[str, JSON] = {}
        self.lock = threading.Lock()
        self.synced = threading.Event()
        self.changed = threading.Event()
        self.resource_version = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._response: Any = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"informer-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            try:
                response.shutdown()
            except Exception:  # the stream may already be closed
                with contextlib.suppress(Exception):
                    response.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def snapshot(self) -> list[JSON]:
        with self.lock:
            return list(self.items.values())

    def get(self, key: str) -> JSON | None:
        with self.lock:
            return self.items.get(key)

    def _kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"_preload_content": False}
        if self.field_selector:
            kwargs["field_selector"] = self.field_selector
        return kwargs

    def _relist(self) -> None:
        items: dict[str, JSON] = {}
        token: str | None = None
        while True:
            kwargs = self._kwargs()
            kwargs["limit"] = self.page_size
            if token:
                kwargs["_continue"] = token
            response = self._list(**kwargs)
            try:
                body = orjson.loads(response.data)
            finally:
                response.release_conn()
            for item in body.get("items") or []:
                items[_key(item)] = item
            meta = body.get("metadata") or {}
            token = meta.get("continue") or None
            if not token:
                self.resource_version = str(meta.get("resourceVersion") or "")
                break
        with self.lock:
            self.items = items
        self.synced.set()
        self.changed.set()

    def _watch(self) -> None:
        kwargs = self._kwargs()
        kwargs.update(
            watch=True,
            allow_watch_bookmarks=True,
            resource_version=self.resource_version,
            timeout_seconds=self.watch_timeout,
            _request_timeout=(10, self.watch_timeout + 30),
        )
        response = self._list(**kwargs)
        self._response = response
        try:
            for line in iter_resp_lines(response):
                if self._stop.is_set():
                    return
                event = orjson.loads(line)
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        self.resource_version = ""
                    return
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if rv:
                    self.resource_version = str(rv)
                if kind == "BOOKMARK":
                    continue
                with self.lock:
                    if kind == "DELETED":
                        self.items.pop(_key(obj), None)
                    else:
                        self.items[_key(obj)] = obj
                self.changed.set()
        finally:
            self._response = None
            response.close()  # a watch cut short must not go back to the pool

    def _run(self) -> None:
        delay = 0.2
        while not self._stop.is_set():
            try:
                if not self.resource_version:
                    self._relist()
                self._watch()
                delay = 0.2
            except ApiException as exc:
                if exc.status == 410:
                    self.resource_version = ""
                    continue
                log.debug("%s informer: %s", self.name, exc)
                self._stop.wait(delay)
                delay = min(5.0, delay * 2)
            except Exception as exc:  # connection reset, server stopped, bad line
                if self._stop.is_set():
                    return
                log.debug("%s informer: %s", self.name, exc)
                self._stop.wait(delay)
                delay = min(5.0, delay * 2)
                self.resource_version = ""


class Informers:
    """Node and Pod caches shared by the kubelets and the scheduler of one process."""

    def __init__(self, api_client: client.ApiClient) -> None:
        core = client.CoreV1Api(api_client)
        self.nodes = Informer(core.list_node, name="nodes")
        self.pods = Informer(core.list_pod_for_all_namespaces, name="pods")
        self._started = False
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if not self._started:
                self._started = True
                self.nodes.start()
                self.pods.start()

    def wait_synced(self, timeout: float = 30.0) -> bool:
        return self.nodes.synced.wait(timeout) and self.pods.synced.wait(timeout)

    def stop(self) -> None:
        self.nodes.stop()
        self.pods.stop()

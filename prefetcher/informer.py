"""List + watch of one kind into a local cache, so the prefetcher sees the cluster without polling it.

One thread per kind. It lists (paged), then watches from the list's resourceVersion with
bookmarks, resumes from the last resourceVersion it saw when a watch ends or drops, relists
when the server answers 410 Gone, and backs off on API errors. Every change, including the
differences a relist discovers, is passed to `on_event` so the controller can react at once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from kubernetes.client.exceptions import ApiException

from imagesync.backoff import Backoff
from imagesync.kubeclient import KubeError, from_api_exception
from prefetcher.plangate import PlanGate

log = logging.getLogger(__name__)

Obj = dict[str, Any]
# A kubernetes-client list method (e.g. CoreV1Api.list_node) with its fixed arguments bound.
ListCall = Callable[..., Any]


class Clock(Protocol):
    """The runtime's time source; a simulation passes an accelerated one."""

    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Wait `seconds` of clock time or until `event` is set; True when it was set."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary start that never jump (durations, deadlines)."""
        ...


class SystemClock:
    """Wall-clock time, for a real cluster."""

    def now(self) -> float:
        return time.time()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(max(0.0, seconds))

    def monotonic(self) -> float:
        return time.monotonic()


# A watch that delivered nothing and lasted less than this (clock seconds) ended "at once":
# the next one waits a backoff instead of following in a tight loop.
EMPTY_WATCH_MIN = 1.0


class Gone(Exception):
    """The resourceVersion we hold is too old: the cache must be rebuilt by a relist."""


@dataclass(frozen=True)
class Change:
    """One change seen in the cache: `old` is None when added, `new` is None when deleted.

    `initial` marks what the first list found: already there, not a change seen happening.
    """

    kind: str
    key: str
    old: Obj | None
    new: Obj | None
    initial: bool = False


def object_key(obj: Mapping[str, Any]) -> str:
    """`namespace/name`, or `name` for cluster-scoped objects."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace") or ""
    name = str(meta.get("name") or "")
    return f"{namespace}/{name}" if namespace else name


def _slim(obj: Obj) -> Obj:
    """Drop managedFields: large, and nothing here reads them."""
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        meta.pop("managedFields", None)
    return obj


@dataclass(frozen=True)
class InformerSettings:
    """Timings of one informer; tests shorten them."""

    page_size: int = 500
    watch_timeout: int = 300
    connect_timeout: float = 10.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0


class Informer:
    """The cache of one kind, kept current by a list + watch thread."""

    def __init__(
        self,
        kind: str,
        list_call: ListCall,
        *,
        clock: Clock,
        on_event: Callable[[Change], None],
        on_error: Callable[[str, KubeError], None] | None = None,
        on_request: Callable[[str], None] | None = None,
        settings: InformerSettings | None = None,
        transform: Callable[[Obj], Obj] | None = None,
        gate: PlanGate | None = None,
        after_relist: Callable[[], None] | None = None,
    ) -> None:
        """`transform` keeps only what the cache's readers need (a cache of every running
        pod in a large cluster would otherwise hold megabytes nobody reads); `gate` holds the
        decoding of what the thread reads back while a plan runs; `after_relist` runs on this
        thread once a relist has replaced the cache (the memory its pages took can go back to
        the system)."""
        self.kind = kind
        self._gate = gate or PlanGate()
        self._transform = transform or _slim
        self._after_relist = after_relist
        self._on_request = on_request
        self._list_call = list_call
        self._clock = clock
        self._on_event = on_event
        self._on_error = on_error
        self._settings = settings or InformerSettings()
        self._lock = threading.Lock()
        self._items: dict[str, Obj] = {}
        self._resource_version: str | None = None
        self._response: Any = None
        self._retry_after = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.synced = threading.Event()
        self.relists = 0
        self.watches = 0

    # --- reading the cache ---------------------------------------------------------------

    def items(self) -> list[Obj]:
        with self._lock:
            return list(self._items.values())

    def get(self, key: str) -> Obj | None:
        with self._lock:
            return self._items.get(key)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    # --- the thread ----------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"informer-{self.kind}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end and break any watch it is blocked in."""
        self._stop.set()
        response = self._response
        if response is not None:
            # Closing a socket another thread reads fails in ways that do not matter here.
            with contextlib.suppress(Exception):
                response.shutdown()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        """List, then watch forever; relist on 410; back off on errors, and after a watch
        that ended at once with nothing in it (a server or proxy that closes streams)."""
        backoff = Backoff(self._settings.backoff_initial, self._settings.backoff_max)
        while not self._stop.is_set():
            try:
                if self._resource_version is None:
                    self._relist()
                    backoff.reset()
                began = self._clock.monotonic()
                if self._watch() or self._clock.monotonic() - began >= EMPTY_WATCH_MIN:
                    backoff.reset()
                else:
                    pause = backoff.next()
                    log.info(
                        "%s: the watch ended at once; watching again in %.1fs", self.kind, pause
                    )
                    self._clock.wait(self._stop, pause)
                continue
            except Gone:
                log.info(
                    "%s: resourceVersion %s expired; relisting", self.kind, self._resource_version
                )
                self._resource_version = None
                continue
            except KubeError as exc:
                if self._stop.is_set():
                    break
                self._report(exc)
                pause = max(backoff.next(), self._retry_after)
            except Exception as exc:
                if self._stop.is_set():
                    break
                error = KubeError(f"watch {self.kind}: connection lost: {exc!r}")
                self._report(error)
                pause = backoff.next()
            log.warning("%s: retrying in %.1fs", self.kind, pause)
            self._clock.wait(self._stop, pause)

    def _report(self, error: KubeError) -> None:
        log.warning("%s: %s", self.kind, error)
        if self._on_error is not None:
            self._on_error("watch" if self._resource_version else "list", error)

    def _call(self, what: str, **kwargs: Any) -> Any:
        self._retry_after = 0.0
        if self._on_request is not None:
            self._on_request(what)
        try:
            return self._list_call(_preload_content=False, **kwargs)
        except ApiException as exc:
            if exc.status == 410:
                raise Gone() from None
            self._retry_after = _retry_after(exc)
            raise from_api_exception(exc, f"{what} {self.kind}") from None

    def _relist(self) -> None:
        """A paged list; the cache becomes exactly its result, and the differences are events."""
        items: dict[str, Obj] = {}
        token: str | None = None
        resource_version = ""
        while True:
            kwargs: dict[str, Any] = {"limit": self._settings.page_size}
            if token:
                kwargs["_continue"] = token
            try:
                response = self._call(
                    "list",
                    _request_timeout=(self._settings.connect_timeout, 120.0),
                    **kwargs,
                )
            except Gone:
                # The continue token expired mid-list: start the list again.
                items, token = {}, None
                continue
            data = response.data
            self._gate.wait()
            body = orjson.loads(data)
            for obj in body.get("items") or []:
                items[object_key(obj)] = self._transform(obj)
            meta = body.get("metadata") or {}
            resource_version = str(meta.get("resourceVersion") or resource_version)
            token = meta.get("continue") or None
            # The page's bytes and decoded objects go before the next page comes (a page of
            # keepers of 200 containers is 70 MB of text and several times that decoded).
            del response, body
            if not token:
                break
        with self._lock:
            old = self._items
            self._items = items
            self._resource_version = resource_version or None
        initial = self.relists == 0
        self.relists += 1
        self.synced.set()
        for key in old.keys() - items.keys():
            self._emit(Change(self.kind, key, old[key], None))
        for key, obj in items.items():
            previous = old.get(key)
            if previous is None or _rv(previous) != _rv(obj):
                self._emit(Change(self.kind, key, previous, obj, initial))
        if self._resource_version is None:
            # A server that gives no list resourceVersion cannot resume; watch from now.
            self._resource_version = ""
        del old
        if self._after_relist is not None:
            self._after_relist()

    def _watch(self) -> bool:
        """One watch request; returns True when it delivered anything (the stream is healthy)."""
        settings = self._settings
        response = self._call(
            "watch",
            watch=True,
            resource_version=self._resource_version or None,
            allow_watch_bookmarks=True,
            timeout_seconds=settings.watch_timeout,
            _request_timeout=(settings.connect_timeout, settings.watch_timeout + 30.0),
        )
        self.watches += 1
        self._response = response
        delivered = False
        try:
            for event in _events(response, self._gate.wait):
                if self._stop.is_set():
                    break
                delivered = True
                self._apply(event)
        finally:
            self._response = None
            response.release_conn()
        return delivered

    def _apply(self, event: Obj) -> None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            code = int(obj.get("code") or 0)
            if code == 410:
                raise Gone()
            raise KubeError(
                f"watch {self.kind}: {obj.get('reason', '')}: {obj.get('message', '')}",
                status=code,
                reason=str(obj.get("reason", "")),
            )
        version = _rv(obj)
        if kind == "BOOKMARK":
            if version:
                self._resource_version = version
            return
        key = object_key(obj)
        with self._lock:
            old = self._items.get(key)
            if kind == "DELETED":
                self._items.pop(key, None)
            elif kind in ("ADDED", "MODIFIED"):
                obj = self._items[key] = self._transform(obj)
            else:
                log.debug("%s: ignoring watch event %s", self.kind, kind)
                return
            if version:
                self._resource_version = version
        self._emit(Change(self.kind, key, old, None if kind == "DELETED" else obj))

    def _emit(self, change: Change) -> None:
        try:
            self._on_event(change)
        except Exception:  # a bad handler must not kill the watch
            log.exception("%s: event handler failed", self.kind)


def _events(response: Any, before_decoding: Callable[[], None]) -> Iterator[Obj]:
    """The watch events of a streamed response, one JSON object a line, decoded from the bytes
    as they come (the client's `iter_resp_lines` copies its buffer at every line and decodes
    each to text first: at a thousand nodes that was a sixth of the process's CPU), each once
    `before_decoding` returns (the plan gate)."""
    pending = b""
    for segment in response.stream(amt=None, decode_content=False):
        lines = (pending + (segment.encode() if isinstance(segment, str) else segment)).split(b"\n")
        pending = lines.pop()
        for line in lines:
            if line.strip():
                before_decoding()
                yield orjson.loads(line)
    if pending.strip():
        before_decoding()
        yield orjson.loads(pending)


def _rv(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _retry_after(exc: ApiException) -> float:
    """Seconds the server asked us to wait (429 / 503 Retry-After), else 0."""
    headers = exc.headers or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return float(value) if value is not None else 0.0
    except ValueError:
        return 0.0

"""Watchers: one queue per watch, fed by the store's single event log with per-watcher filters."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .resources import ResourceDef
from .selectors import FieldSelector, LabelSelector

if TYPE_CHECKING:
    from .store import Store

Obj = dict[str, Any]


@dataclass(frozen=True)
class Event:
    """One committed write: the global resourceVersion it made and the object before and after."""

    rv: int
    key: str  # ResourceDef.key
    type: str  # ADDED | MODIFIED | DELETED
    obj: Obj
    old: Obj | None


@dataclass(eq=False)
class Watcher:
    """A watch's filter and its queue of (type, object) pairs; `None` in the queue ends it."""

    key: str
    namespace: str | None
    node: str | None
    labels: LabelSelector
    fields: FieldSelector
    queue: queue.SimpleQueue[tuple[str, Obj] | None] = field(default_factory=queue.SimpleQueue)
    closed: bool = False
    max_backlog: int = 200_000  # a consumer this far behind is cut off, like the real server

    def index_key(self) -> tuple[str, str | None, str | None]:
        return (self.key, self.namespace, self.node)

    def matches(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        return self.labels.matches(meta.get("labels")) and self.fields.matches(obj)

    def translate(self, event: Event) -> str | None:
        """The event type this watcher sees: an object that starts or stops matching its
        selectors arrives as ADDED or DELETED, like the real server's filtered watches."""
        now = self.matches(event.obj)
        if event.type == "ADDED":
            return "ADDED" if now else None
        if event.type == "DELETED":
            return "DELETED" if now else None
        before = self.matches(event.old)
        if now and before:
            return "MODIFIED"
        if now:
            return "ADDED"
        if before:
            return "DELETED"
        return None

    def offer(self, event: Event) -> None:
        kind = self.translate(event)
        if kind is not None and not self.closed:
            if self.queue.qsize() >= self.max_backlog:
                self.close()  # the client re-lists or resumes, as after any dropped watch
                return
            self.queue.put((kind, event.obj))

    def close(self) -> None:
        """End the watch (the stream handler sees `None` and finishes the response)."""
        if not self.closed:
            self.closed = True
            self.queue.put(None)


@dataclass
class WatchOptions:
    since: int | None
    timeout: float
    bookmarks: bool
    initial_events_end: bool


@dataclass
class WatchStream:
    """Events of one watch as dicts: initial ones, then live ones, BOOKMARKs when idle, until
    the timeout, a client disconnect, or `watcher.close()` (used by fault injection)."""

    store: Store
    rd: ResourceDef
    watcher: Watcher
    initial: list[tuple[str, Obj]]
    options: WatchOptions
    bookmark_interval: float
    error: Obj | None = None
    alive: Callable[[], bool] | None = None
    convert: Callable[[Obj], Obj] | None = None

    def _bookmark(self, rv: int, end_of_initial: bool = False) -> Obj:
        meta: Obj = {"resourceVersion": str(rv)}
        if end_of_initial:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {
            "type": "BOOKMARK",
            "object": {"kind": self.rd.kind, "apiVersion": self.rd.api_version, "metadata": meta},
        }

    def events(self) -> Iterator[Obj]:
        try:
            if self.error is not None:
                yield {"type": "ERROR", "object": self.error}
                return
            for kind, obj in self.initial:
                yield {"type": kind, "object": obj}
            if self.options.initial_events_end:
                rv = self.store.idle_rv(self.watcher)
                yield self._bookmark(rv if rv is not None else self.store.rv, True)
            deadline = time.monotonic() + self.options.timeout
            last = time.monotonic()
            while True:
                now = time.monotonic()
                if now >= deadline:
                    if (
                        self.options.bookmarks
                        and (rv := self.store.idle_rv(self.watcher)) is not None
                    ):
                        yield self._bookmark(rv)
                    return
                wait = deadline - now
                if self.options.bookmarks:
                    wait = min(wait, max(0.0, last + self.bookmark_interval - now))
                try:
                    item = self.watcher.queue.get(timeout=min(max(wait, 0.001), 5.0))
                except queue.Empty:
                    if self.alive is not None and not self.alive():
                        return
                    if self.options.bookmarks and time.monotonic() - last >= self.bookmark_interval:
                        rv = self.store.idle_rv(self.watcher)
                        if rv is not None:
                            last = time.monotonic()
                            yield self._bookmark(rv)
                    continue
                if item is None:
                    return
                obj = item[1] if self.convert is None else self.convert(item[1])
                yield {"type": item[0], "object": obj}
        finally:
            self.close()

    def close(self) -> None:
        self.store.unwatch(self.watcher)
        self.watcher.closed = True

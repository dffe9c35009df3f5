"""The object store: a global resourceVersion, O(1) get, namespace and node indexes, and one
bounded event log that feeds watchers and lets them resume."""

from __future__ import annotations

import bisect
import json
import threading
from collections.abc import Iterator
from typing import Any

import orjson

from .errors import expired
from .watch import Event, Watcher

Obj = dict[str, Any]
Ref = tuple[str, str, str]  # (resource key, namespace, name)

POD_KEY = "/pods"


def _node_of(obj: Obj | None) -> str | None:
    if obj is None:
        return None
    node = (obj.get("spec") or {}).get("nodeName")
    return str(node) if node else None


def _dumps(obj: Obj) -> bytes:
    """Compact JSON of a stored object: orjson (several times faster than json, the watch
    fan-out of a thousand nodes' status writes spends most of its time here); json for
    what orjson refuses (an integer beyond 64 bits)."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return json.dumps(obj, separators=(",", ":")).encode()


class Store:
    """Objects are immutable once stored: writers always store a new dict, readers never copy.

    Callers hold `lock` around read-modify-write sequences; every method takes it too (it is
    re-entrant)."""

    def __init__(self, history_size: int = 100_000) -> None:
        self.lock = threading.RLock()
        self.history_size = history_size
        self._rv = 0
        self._objects: dict[str, dict[str, dict[str, Obj]]] = {}
        self._sorted: dict[str, list[tuple[str, str]]] = {}
        self._by_uid: dict[str, Ref] = {}
        self._dependents: dict[str, set[Ref]] = {}
        self._pods_by_node: dict[str, set[tuple[str, str]]] = {}
        self._log: list[Event] = []
        self._log_base = 1  # rv of _log[0]
        self._watchers: dict[tuple[str, str | None, str | None], list[Watcher]] = {}
        self._listeners: list[Any] = []
        self._encoded: dict[Ref, tuple[str, bytes]] = {}
        self._encoded_bare: dict[Ref, tuple[str, bytes]] = {}

    # --- reads ---------------------------------------------------------------------------

    @property
    def rv(self) -> int:
        return self._rv

    def get(self, key: str, namespace: str, name: str) -> Obj | None:
        return self._objects.get(key, {}).get(namespace, {}).get(name)

    def by_uid(self, uid: str) -> Obj | None:
        with self.lock:
            ref = self._by_uid.get(uid)
            return None if ref is None else self.get(*ref)

    def dependents(self, uid: str) -> list[Ref]:
        with self.lock:
            return list(self._dependents.get(uid, ()))

    def count(self, key: str) -> int:
        return sum(len(v) for v in self._objects.get(key, {}).values())

    def namespaces_in_use(self, key: str) -> list[str]:
        return [ns for ns, objs in self._objects.get(key, {}).items() if objs]

    def resource_keys(self) -> list[str]:
        return list(self._objects)

    def pods_on_node(self, node: str) -> list[Obj]:
        with self.lock:
            refs = sorted(self._pods_by_node.get(node, ()))
            return [o for ns, name in refs if (o := self.get(POD_KEY, ns, name)) is not None]

    def sorted_refs(
        self, key: str, namespace: str | None, after: tuple[str, str] | None
    ) -> Iterator[tuple[str, str]]:
        """(namespace, name) pairs in etcd key order, starting after `after`."""
        with self.lock:
            refs = self._sorted.get(key)
            if refs is None:
                refs = sorted(
                    (ns, n) for ns, objs in self._objects.get(key, {}).items() for n in objs
                )
                self._sorted[key] = refs
        start = 0
        if namespace is not None:
            start = bisect.bisect_left(refs, (namespace, ""))
        if after is not None:
            start = max(start, bisect.bisect_right(refs, after))
        for i in range(start, len(refs)):
            ref = refs[i]
            if namespace is not None and ref[0] != namespace:
                return
            yield ref

    def objects(self, key: str, namespace: str | None, node: str | None = None) -> list[Obj]:
        """All objects of a resource (in a namespace, or on a node for pods), unsorted."""
        with self.lock:
            if node is not None and key == POD_KEY:
                refs = self._pods_by_node.get(node, set())
                out = [
                    self.get(key, ns, n) for ns, n in refs if namespace is None or ns == namespace
                ]
                return [o for o in out if o is not None]
            by_ns = self._objects.get(key, {})
            if namespace is not None:
                return list(by_ns.get(namespace, {}).values())
            return [o for objs in by_ns.values() for o in objs.values()]

    def encode(self, key: str, obj: Obj, *, bare: bool = False) -> bytes:
        """The JSON of an object, cached while it is the stored version (lists and watches of
        thousands of pods then cost a join, not a serialization per object per request).
        `bare`: without `kind` and `apiVersion`, as items of a built-in kind's list."""
        meta = obj.get("metadata") or {}
        ref = (key, str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        current = self.get(*ref) is obj
        if bare:
            obj = {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
        if not current:
            return _dumps(obj)
        cache = self._encoded_bare if bare else self._encoded
        rv = str(meta.get("resourceVersion", ""))
        cached = cache.get(ref)
        if cached is not None and cached[0] == rv:
            return cached[1]
        data = _dumps(obj)
        cache[ref] = (rv, data)
        return data

    def state_at(self, key: str, rv: int) -> dict[tuple[str, str], Obj | None]:
        """For every object of `key` changed after `rv`: its state at `rv` (None: absent then).
        Objects not in the result are unchanged since. Lets pages and exact-version lists be
        served from a consistent snapshot, like etcd's (410 Expired beyond the event log)."""
        with self.lock:
            if rv < self.oldest_rv():
                raise expired(f"too old resource version: {rv} ({self.oldest_rv() + 1})")
            states: dict[tuple[str, str], Obj | None] = {}
            for event in self._log[max(0, rv + 1 - self._log_base) :]:
                if event.key != key:
                    continue
                meta = event.obj["metadata"]
                ref = (str(meta.get("namespace") or ""), str(meta["name"]))
                if ref not in states:
                    states[ref] = None if event.type == "ADDED" else event.old
            return states

    def oldest_rv(self) -> int:
        """The oldest resourceVersion a watch can resume from."""
        return self._log_base - 1

    # --- writes --------------------------------------------------------------------------

    def _commit(self, key: str, kind: str, obj: Obj, old: Obj | None) -> Obj:
        self._rv += 1
        meta = dict(obj.get("metadata") or {})
        meta["resourceVersion"] = str(self._rv)
        obj = {**obj, "metadata": meta}
        ns, name = str(meta.get("namespace") or ""), str(meta["name"])
        ref = (key, ns, name)
        by_ns = self._objects.setdefault(key, {})
        if kind == "DELETED":
            self._encoded.pop(ref, None)
            self._encoded_bare.pop(ref, None)
            objs = by_ns.get(ns, {})
            objs.pop(name, None)
            if not objs:
                by_ns.pop(ns, None)
            self._sorted.pop(key, None)
            self._by_uid.pop(str(meta.get("uid", "")), None)
        else:
            objs = by_ns.setdefault(ns, {})
            if name not in objs:
                self._sorted.pop(key, None)
            objs[name] = obj
            self._by_uid[str(meta.get("uid", ""))] = ref
        self._index_owners(ref, old, None if kind == "DELETED" else obj)
        if key == POD_KEY:
            self._index_node((ns, name), old, None if kind == "DELETED" else obj)
        event = Event(self._rv, key, kind, obj, old)
        self._log.append(event)
        if len(self._log) > 2 * self.history_size:
            drop = len(self._log) - self.history_size
            del self._log[:drop]
            self._log_base += drop
        self._dispatch(event, ns)
        for listener in self._listeners:
            listener(event)
        return obj

    def _index_owners(self, ref: Ref, old: Obj | None, new: Obj | None) -> None:
        def owners(o: Obj | None) -> set[str]:
            if o is None:
                return set()
            return {
                str(r.get("uid"))
                for r in (o["metadata"].get("ownerReferences") or [])
                if r.get("uid")
            }

        before, after = owners(old), owners(new)
        for uid in before - after:
            deps = self._dependents.get(uid)
            if deps is not None:
                deps.discard(ref)
                if not deps:
                    del self._dependents[uid]
        for uid in after - before:
            self._dependents.setdefault(uid, set()).add(ref)

    def _index_node(self, ref: tuple[str, str], old: Obj | None, new: Obj | None) -> None:
        before, after = _node_of(old), _node_of(new)
        if before == after:
            return
        if before is not None:
            pods = self._pods_by_node.get(before)
            if pods is not None:
                pods.discard(ref)
                if not pods:
                    del self._pods_by_node[before]
        if after is not None:
            self._pods_by_node.setdefault(after, set()).add(ref)

    def create(self, key: str, obj: Obj) -> Obj:
        with self.lock:
            return self._commit(key, "ADDED", obj, None)

    def update(self, key: str, obj: Obj, old: Obj) -> Obj:
        with self.lock:
            return self._commit(key, "MODIFIED", obj, old)

    def delete(self, key: str, obj: Obj) -> Obj:
        with self.lock:
            return self._commit(key, "DELETED", obj, obj)

    def add_listener(self, listener: Any) -> None:
        """Call `listener(event)` after each commit, under the lock (keep it cheap)."""
        with self.lock:
            self._listeners.append(listener)

    # --- watches -------------------------------------------------------------------------

    def _dispatch(self, event: Event, ns: str) -> None:
        nodes = {None, _node_of(event.obj), _node_of(event.old)} if event.key == POD_KEY else {None}
        seen: set[int] = set()
        for wns in (None, ns):
            for node in nodes:
                for w in self._watchers.get((event.key, wns, node), ()):
                    if id(w) not in seen:
                        seen.add(id(w))
                        w.offer(event)

    def watch(self, watcher: Watcher, since: int | None) -> list[tuple[str, Obj]]:
        """Register a watcher. With `since`, replay logged events after it (410 Expired if the
        log no longer reaches back that far); without, return synthetic ADDED events for every
        matching object. Either way no event is lost or duplicated between the two."""
        with self.lock:
            initial: list[tuple[str, Obj]] = []
            if since is None:
                candidates = self.objects(watcher.key, watcher.namespace, watcher.node)
                candidates.sort(
                    key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"])
                )
                initial = [("ADDED", o) for o in candidates if watcher.matches(o)]
            else:
                if since < self.oldest_rv():
                    raise expired(f"too old resource version: {since} ({self.oldest_rv() + 1})")
                start = max(0, since + 1 - self._log_base)
                for event in self._log[start:]:
                    if event.key == watcher.key:
                        kind = watcher.translate(event)
                        if kind is not None:
                            initial.append((kind, event.obj))
            self._watchers.setdefault(watcher.index_key(), []).append(watcher)
            return initial

    def unwatch(self, watcher: Watcher) -> None:
        with self.lock:
            lst = self._watchers.get(watcher.index_key())
            if lst is not None and watcher in lst:
                lst.remove(watcher)
                if not lst:
                    del self._watchers[watcher.index_key()]

    def watchers(self) -> list[Watcher]:
        with self.lock:
            return [w for ws in self._watchers.values() for w in ws]

    def idle_rv(self, watcher: Watcher) -> int | None:
        """The current resourceVersion if the watcher has nothing queued (for a BOOKMARK)."""
        with self.lock:
            return self._rv if watcher.queue.empty() else None

"""The garbage collector and namespace controller: deletes dependents whose owners are gone,
finishes foreground deletion, and empties terminating namespaces — asynchronously, like the
real controllers, in one background thread fed by the store's commits."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from typing import Any

from .api import Core
from .errors import ApiError
from .objects import FOREGROUND
from .resources import by_key
from .store import Ref
from .watch import Event

Obj = dict[str, Any]
LOG = logging.getLogger(__name__)
Task = tuple[str, Any]


class Collector:
    """Run `start()` once; `drain()` waits until every queued task is done (for tests)."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self._tasks: queue.Queue[Task | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        core.store.add_listener(self._on_event)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="apiserver-gc", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._tasks.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def drain(self) -> None:
        self._tasks.join()

    # Runs under the store lock: only look and enqueue.
    def _on_event(self, event: Event) -> None:
        meta = event.obj["metadata"]
        uid = str(meta.get("uid", ""))
        ns = str(meta.get("namespace") or "")
        if event.type == "DELETED":
            self._tasks.put(("owner-gone", uid))
            if event.key == "/nodes":
                self._tasks.put(("node-gone", str(meta["name"])))
            for ref in meta.get("ownerReferences") or []:
                owner = self.core.store.by_uid(str(ref.get("uid")))
                if owner is not None and FOREGROUND in (owner["metadata"].get("finalizers") or []):
                    self._tasks.put(("foreground", str(ref.get("uid"))))
            if ns:
                nso = self.core.store.get("/namespaces", "", ns)
                if nso is not None and nso["metadata"].get("deletionTimestamp"):
                    self._tasks.put(("namespace", ns))
            return
        refs = meta.get("ownerReferences") or []
        if refs and any(self.core.store.by_uid(str(r.get("uid"))) is None for r in refs):
            self._tasks.put(("check", (event.key, ns, str(meta["name"]))))
        if meta.get("deletionTimestamp"):
            if FOREGROUND in (meta.get("finalizers") or []):
                self._tasks.put(("foreground", uid))
            if event.key == "/namespaces" and (
                event.old is None or not event.old["metadata"].get("deletionTimestamp")
            ):
                self._tasks.put(("namespace", str(meta["name"])))

    def _run(self) -> None:
        while True:
            task = self._tasks.get()
            try:
                if task is None:
                    return
                kind, arg = task
                if kind == "owner-gone":
                    for ref in self.core.store.dependents(arg):
                        self._check(ref)
                elif kind == "check":
                    self._check(arg)
                elif kind == "foreground":
                    self._foreground(arg)
                elif kind == "namespace":
                    self._namespace(arg)
                elif kind == "node-gone":
                    self._pods_of_deleted_node(arg)
            except ApiError:
                pass  # lost a race with a client; the next event brings us back
            except Exception:  # never let the collector die: drain() would wait forever
                LOG.exception("garbage collector task %s failed", task)
            finally:
                self._tasks.task_done()

    def _check(self, ref: Ref) -> None:
        key, ns, name = ref
        rd = by_key(self.core.registry, key)
        if rd is None:
            return
        with self.core.store.lock:
            obj = self.core.store.get(key, ns, name)
            if obj is None:
                return
            refs = obj["metadata"].get("ownerReferences") or []
            alive = [r for r in refs if self.core.store.by_uid(str(r.get("uid"))) is not None]
            if len(alive) == len(refs):
                return
            if alive:
                meta = {**obj["metadata"], "ownerReferences": alive}
                self.core.store.update(key, {**obj, "metadata": meta}, obj)
                return
            if obj["metadata"].get("deletionTimestamp"):
                return
        self.core.delete(rd, ns, name, {"propagationPolicy": "Background"})

    def _foreground(self, uid: str) -> None:
        owner = self.core.store.by_uid(uid)
        if owner is None:
            return
        meta = owner["metadata"]
        if not meta.get("deletionTimestamp") or FOREGROUND not in (meta.get("finalizers") or []):
            return
        deps = self.core.store.dependents(uid)
        for key, ns, name in deps:
            dep = self.core.store.get(key, ns, name)
            rd = by_key(self.core.registry, key)
            if dep is not None and rd is not None and not dep["metadata"].get("deletionTimestamp"):
                self.core.delete(rd, ns, name, {"propagationPolicy": "Foreground"})
        if self.core.store.dependents(uid):
            return
        okey = next((k for k in self.core.store.resource_keys() if self._holds(k, owner)), None)
        rd = by_key(self.core.registry, okey) if okey else None
        if rd is None:
            return
        with self.core.store.lock:
            current = self.core.store.get(
                rd.key, str(meta.get("namespace") or ""), str(meta["name"])
            )
            if current is None or current["metadata"].get("uid") != uid:
                return
            fins = [f for f in current["metadata"].get("finalizers") or [] if f != FOREGROUND]
            body = {**current, "metadata": {**current["metadata"], "finalizers": fins}}
            self.core.update(rd, str(meta.get("namespace") or ""), str(meta["name"]), body)

    def _holds(self, key: str, obj: Obj) -> bool:
        meta = obj["metadata"]
        found = self.core.store.get(key, str(meta.get("namespace") or ""), str(meta["name"]))
        return found is not None and found["metadata"].get("uid") == meta.get("uid")

    def _pods_of_deleted_node(self, node: str) -> None:
        """Like the pod GC controller: pods bound to a node that is gone are force-deleted."""
        if self.core.store.get("/nodes", "", node) is not None:
            return
        rd = self.core.resource("", "v1", "pods")
        for pod in self.core.store.pods_on_node(node):
            with contextlib.suppress(ApiError):
                meta = pod["metadata"]
                self.core.delete(
                    rd, str(meta["namespace"]), str(meta["name"]), {"gracePeriodSeconds": 0}
                )

    def _namespace(self, ns: str) -> None:
        nso = self.core.store.get("/namespaces", "", ns)
        if nso is None or not nso["metadata"].get("deletionTimestamp"):
            return
        left = 0
        for rd in self.core.registry.all():
            if not rd.namespaced:
                continue
            for obj in self.core.store.objects(rd.key, ns):
                left += 1
                if not obj["metadata"].get("deletionTimestamp"):
                    with contextlib.suppress(ApiError):
                        self.core.delete(rd, ns, str(obj["metadata"]["name"]), {})
        if left == 0 or not any(
            self.core.store.objects(rd.key, ns) for rd in self.core.registry.all() if rd.namespaced
        ):
            with self.core.store.lock:
                current = self.core.store.get("/namespaces", "", ns)
                if current is not None and current["metadata"].get("deletionTimestamp"):
                    self.core.store.delete("/namespaces", current)

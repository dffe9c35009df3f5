"""A CachedImage store in memory with API-server semantics, and a Recorder over it, for tests.

The same rules run against the simulator's API server in test_learning.py; here the store
can inject a conflict between a read and a write exactly where a concurrent writer would.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from imagesync.cachedimage import PlacementProfile, object_name
from imagesync.kubeclient import KubeError
from webhook.metrics import Metrics
from webhook.recorder import Recorder

NOW = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
IMAGE = "nvcr.io/nvidia/pytorch:24.08-py3"


def profile(namespace: str = "training", gpu: bool = True) -> PlacementProfile:
    return PlacementProfile(
        nodeSelector={"nvidia.com/gpu.present": "true"} if gpu else {},
        requiredNodeAffinity=[],
        tolerations=[],
        gpu=gpu,
        namespace=namespace,
        ownerKind="Job",
    )


class MemoryStore:
    """Objects with resourceVersions; a stale write is a 409, as on a real API server."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.lock = threading.Lock()
        self.down = False
        self.before_write: Callable[[], None] | None = None
        self.calls: list[str] = []

    def _check(self) -> None:
        if self.down:
            raise KubeError("unreachable: connection refused", status=0)

    def _bump(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(obj)

    def get(self, name: str) -> dict[str, Any] | None:
        self._check()
        self.calls.append("get")
        with self.lock:
            obj = self.objects.get(name)
            return copy.deepcopy(obj) if obj else None

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        self._check()
        self.calls.append("create")
        with self.lock:
            name = body["metadata"]["name"]
            if name in self.objects:
                raise KubeError("AlreadyExists", status=409, reason="AlreadyExists")
            obj = copy.deepcopy(body)
            obj.pop("status", None)
            self.objects[name] = obj
            return self._bump(obj)

    def _write(self, body: dict[str, Any], part: str) -> dict[str, Any]:
        self._check()
        self.calls.append(f"replace_{part}")
        if self.before_write is not None:
            hook, self.before_write = self.before_write, None
            hook()
        with self.lock:
            current = self.objects[body["metadata"]["name"]]
            if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                raise KubeError("Conflict", status=409, reason="Conflict")
            current[part] = copy.deepcopy(body.get(part) or {})
            return self._bump(current)

    def replace(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._write(body, "spec")

    def replace_status(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._write(body, "status")


class Ticks:
    """A monotonic clock the test moves: per-image backoff without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def pass_backoff(self) -> None:
        self.now += 3600


def recorder(store: MemoryStore, max_pending: int = 100, ticks: Ticks | None = None) -> Recorder:
    return Recorder(
        store,
        Metrics(),
        flush_interval=3600,
        max_pending=max_pending,
        clock=lambda: NOW,
        monotonic=ticks or Ticks(),
    )


def usage(obj: dict[str, Any]) -> dict[str, Any]:
    """The status without the learners' write stamps."""
    return {k: v for k, v in obj["status"].items() if k != "learnerWrites"}


def stored(store: MemoryStore, image: str = IMAGE) -> dict[str, Any]:
    return store.objects[object_name(image)]

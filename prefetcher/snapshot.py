"""The informer caches as the planner's input: memoized conversion, bad objects, learned bounds."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from imagesync.config import Config
from imagesync.kubeclient import KubeError
from prefetcher import observe
from prefetcher.confirmation import StoredPodImages
from prefetcher.demandwatch import DemandWatch
from prefetcher.informer import Clock, Informer, Obj, object_key
from prefetcher.learnlimits import LearnedSelection, select_learned
from prefetcher.metrics import Metrics
from prefetcher.model import ManagedPod, PullKey, PullRecord, Snapshot, WantedImage, Workload

# The controller's logger: admins filter skipped objects by it.
log = logging.getLogger("prefetcher.controller")

T = TypeVar("T")

NODES, IMAGES, PODS, STARTING = "Node", "CachedImage", "Pod", "StartingPod"
# How long a pod we created (or deleted) may stay unseen by the watch before we stop
# assuming it exists (or is going); normally the watch shows it within a second.
# Wall seconds: the watch lags most when the cluster is busiest, whatever the clock's pace.
PENDING_WRITE_TTL = 300.0


class SnapshotBuilder:
    """The Controller's caches read as a Snapshot, with our writes the watch has not shown."""

    config: Config
    clock: Clock
    metrics: Metrics
    nodes: Informer
    images: Informer
    pods: Informer
    starting: Informer
    demand: DemandWatch
    stored_pods: StoredPodImages
    learned_selection: LearnedSelection
    pull_records: dict[PullKey, PullRecord]
    pull_throughput: dict[str, float]
    bad_objects: dict[str, dict[str, str]]
    _snapshot_lock: threading.Lock
    _memo: dict[str, dict[str, tuple[str, Any]]]
    _created: dict[str, tuple[dict[str, Any], float]]
    _deleted: dict[str, float]
    _confirming: dict[str, set[str]]

    if TYPE_CHECKING:

        def _record_error(self, what: str, error: KubeError) -> None: ...

    def snapshot(self) -> Snapshot:
        """The caches (plus our writes the watch has not shown yet) as the planner's input."""
        with self._snapshot_lock:
            now = self.clock.now()
            nodes = self._converted(NODES, self.nodes.items(), observe.node_info)
            moment = datetime.fromtimestamp(now, UTC)
            demand = self.demand.demand(moment, self._converted, nodes)
            images = self._learned_within_bounds(
                self._converted(IMAGES, self.images.items(), observe.wanted_image),
                now,
                demand.workloads,
            )
            pods: list[ManagedPod] = []
            seen: set[str] = set()
            for pod in self._converted(PODS, self.pods.items(), observe.managed_pod):
                if pod is None:
                    continue
                seen.add(pod.name)
                if pod.uid in self._deleted and not pod.deleting:
                    pod = dataclasses.replace(pod, deleting=True)
                pods.append(pod)
            wall = time.monotonic()
            for name, (manifest, when) in list(self._created.items()):
                if name in seen or wall - when > PENDING_WRITE_TTL:
                    self._created.pop(name, None)
                    continue
                pending = observe.managed_pod(manifest)
                if pending is not None:
                    pods.append(pending)
            live = {pod.uid for pod in pods}
            for uid, when in list(self._deleted.items()):
                if uid not in live or wall - when > PENDING_WRITE_TTL:
                    self._deleted.pop(uid, None)
            starting = self._converted(STARTING, self.starting.items(), observe.starting_pod)
            return Snapshot(
                now=datetime.fromtimestamp(now, UTC),
                nodes=tuple(nodes),
                images=images,
                pods=tuple(pods),
                pull_records=dict(self.pull_records),
                pull_throughput=dict(self.pull_throughput),
                starting=tuple(pod for pod in starting if pod is not None),
                demand=demand,
            )

    def _learned_within_bounds(
        self, images: list[WantedImage], now: float, workloads: Iterable[Workload]
    ) -> tuple[WantedImage, ...]:
        """Learned images confirmed by stored pods (in their status, or seen by this process
        and not written yet) or by stored workload templates, within the configured bounds;
        the selection is kept for the report and the metrics."""
        seen = self.stored_pods.namespaces(now)
        for workload in workloads:  # a stored template confirms its images, as a pod does
            namespace = workload.key.split("/")[1]
            for image in workload.images:
                seen.setdefault(image, set()).add(namespace)
        self._confirming = seen
        confirmed = [
            dataclasses.replace(
                image, confirmed_namespaces=image.confirmed_namespaces | seen[image.image]
            )
            if image.image in seen and not seen[image.image] <= image.confirmed_namespaces
            else image
            for image in images
        ]
        selection = select_learned(confirmed, datetime.fromtimestamp(now, UTC), self.config)
        self.learned_selection = selection
        self.metrics.observe_learned(selection)
        return selection.images

    def _converted(self, kind: str, objs: list[Obj], convert: Callable[[Obj], T]) -> list[T]:
        """`convert` of each object, reusing the last result while its resourceVersion holds
        (a thousand nodes heartbeat, but few change between two passes)."""
        memo: dict[str, tuple[str, Any]] = self._memo.setdefault(kind, {})
        fresh: dict[str, tuple[str, Any]] = {}
        out: list[T] = []
        bad: dict[str, str] = {}
        for obj in objs:
            key = object_key(obj)
            version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
            hit = memo.get(key)
            if hit is not None and version and hit[0] == version:
                value = hit[1]
            else:
                try:
                    value = convert(obj)
                except Exception as exc:  # one bad object must not stop the others
                    bad[key] = f"{type(exc).__name__}: {exc}"
                    continue
            fresh[key] = (version, value)
            out.append(value)
        self._memo[kind] = fresh
        self._note_bad_objects(kind, bad)
        return out

    def _note_bad_objects(self, kind: str, bad: Mapping[str, str]) -> None:
        """Log each object that cannot be read once (until it changes or goes), keep the list
        for the report, and count them."""
        previous = self.bad_objects.get(kind, {})
        for key, why in bad.items():
            if previous.get(key) != why:
                log.error(
                    "skipping %s %s: %s", kind, key, why, extra={"object": key, "reason": why}
                )
                self._record_error(f"read {kind} {key}", KubeError(why))
        self.bad_objects[kind] = dict(bad)
        self.metrics.bad_objects.labels(kind).set(len(bad))

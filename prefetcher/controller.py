"""The prefetcher's controller: its caches, loop and passes wired together in one object.

A *pass* is: snapshot of the informer caches → the plan → execute the plan's writes.
Passes run when something that matters changed (a node joined, turned Ready or left; a
CachedImage appeared or its spec changed; one of our pods changed, save a keeper's
containers coming up that no deletion waits for; a workload pod that the last plan held a
pull back for started: `prefetcher.triggers`), at most one every
`pass_coalesce` (a change after a quiet spell is planned at once, a burst waits for the
next slot and makes one pass), and as a full resync *sweep* every `sweep_interval`. A
sweep plans from scratch; the passes between sweeps plan incrementally
(`IncrementalPlanner`: work in proportion to what changed, the same Plan as the pure
`plan()`). Only the leader writes; a standby keeps its caches warm so it can take over at
once.

What survives a restart lives in the cluster (our pods carry labels, annotations and
deterministic names; a 409 on create means "done"), so a new process adopts it. What lives
only here — the pull backoff memory and the pods created but not yet seen by the watch —
is lost on a restart, which costs at most one early retry.

The pass's parts live in their own modules and the Controller wires them together: the loop
and its triggers (`prefetcher.passloop`, `prefetcher.triggers`), one pass
(`prefetcher.passrun`), the snapshot (`prefetcher.snapshot`), the executor of a plan's
writes (`prefetcher.executor`) and the learning sources (`prefetcher.learners`).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from imagesync.config import Config
from imagesync.kubeclient import KubeError
from prefetcher import cacheforms, memory
from prefetcher.confirmation import StoredPodImages
from prefetcher.demandwatch import DemandWatch
from prefetcher.executor import (
    PassInfo,
    PlanExecutor,
    Stopped,
    WriteHook,
)
from prefetcher.informer import Clock, Informer, InformerSettings, Obj
from prefetcher.kube import Kube
from prefetcher.learners import ImageLearners
from prefetcher.learnlimits import LearnedSelection
from prefetcher.metrics import Metrics
from prefetcher.model import Plan, PullAction, PullKey, PullRecord
from prefetcher.passloop import PassLoop
from prefetcher.passrun import PassRunner, PlanFn
from prefetcher.plangate import PlanGate
from prefetcher.planning.incremental import IncrementalPlanner
from prefetcher.pulloutcomes import ReportedOutcomes
from prefetcher.pullpolicy import RewriteWatch
from prefetcher.snapshot import IMAGES, NODES, PODS, STARTING, SnapshotBuilder
from prefetcher.sources.sync import CatalogView, SourceSync
from prefetcher.statuswriter import STATUS_COUNTS_INTERVAL, StatusWriter
from prefetcher.triggers import (
    image_trigger,
    node_trigger,
    wake_time,
)
from prefetcher.warmnodes import WarmNodes

__all__ = [
    "STATUS_COUNTS_INTERVAL",
    "Controller",
    "PassInfo",
    "PlanFn",
    "Stopped",
    "WriteHook",
    "image_trigger",
    "node_trigger",
    "wake_time",
]

INFORMER_RESOURCES = {NODES: "nodes", IMAGES: "cachedimages", PODS: "pods", STARTING: "pods"}
# Objects a list page holds, for the caches of large objects: a page is decoded whole before
# the cache keeps its slim form, and a page of 500 keepers of 200 containers each took 1 GiB
# decoded (a Node listing 50 images is 40 kB, a keeper of 200 images 140 kB as JSON).
PAGE_SIZES = {NODES: 100, PODS: 25}
ERROR_LOG = 20
# Wall seconds the first pass waits for the workload template caches once the others are
# ready: long enough for a normal list, short enough that a missing RBAC rule (403, logged)
# or a slow list never stops prefetching.
TEMPLATE_SYNC_WAIT = 30.0


class Controller(PassLoop, PassRunner, ImageLearners, SnapshotBuilder, PlanExecutor):
    """Informer caches, a trigger queue, and passes that carry out plans."""

    def __init__(
        self,
        kube: Kube,
        config: Config,
        *,
        clock: Clock,
        metrics: Metrics,
        plan_fn: PlanFn | None = None,
        is_leader: Callable[[], bool] = lambda: True,
        informer_settings: InformerSettings | None = None,
        before_write: WriteHook | None = None,
        catalog: CatalogView | None = None,
        prepare_report: Callable[[Plan], None] | None = None,
    ) -> None:
        self.kube = kube
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self._plan_fn = plan_fn
        self._planner = IncrementalPlanner(config)
        self._planner_lock = threading.Lock()
        self._gate = PlanGate()  # the informers decode between plans, not during them
        self._freed = memory.FreedMemory()  # given back to the OS after passes
        self._is_leader = is_leader
        self._before_write = before_write
        self._prepare_report = prepare_report
        self.sources = SourceSync(config, catalog)
        settings = informer_settings or InformerSettings(watch_timeout=int(config.watch_timeout))
        self.nodes = self._informer(
            NODES, kube.node_source(), settings, transform=cacheforms.slim_node
        )
        self.images = self._informer(IMAGES, kube.cached_image_source(), settings)
        self.pods = self._informer(
            PODS, kube.own_pod_source(), settings, transform=cacheforms.slim_managed_pod
        )
        self.starting = self._informer(STARTING, kube.starting_pod_source(), settings)
        self.demand = DemandWatch(
            kube,
            config,
            lambda kind, source, resource, transform: self._informer(
                kind, source, settings, resource=resource, transform=transform
            ),
        )
        self._excluded_loaded = False
        self.rewrites = RewriteWatch(metrics, clock.now)
        self._wake = threading.Event()
        self._at_once = threading.Event()  # a change that skips the coalescing wait came
        self._lock = threading.Lock()
        self._reasons: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._snapshot_lock = threading.Lock()
        self._memo: dict[str, dict[str, tuple[str, Any]]] = {}
        # Memory between passes.
        self.pull_records: dict[PullKey, PullRecord] = {}
        self.pull_throughput: dict[str, float] = {}  # registry → bytes/s, as last measured
        self._created: dict[str, tuple[dict[str, Any], float]] = {}
        self._deleted: dict[str, float] = {}
        self._outcomes_reported = ReportedOutcomes()
        self._reported_yields: set[str] = set()  # uids of pullers that yielded
        self._refused: list[tuple[PullAction, KubeError]] = []  # this pass's refused pullers
        self.status_writer = StatusWriter(
            kube.patch_cached_image_status,
            clock,
            guard=self._guard,
            gate=self._gate,
            on_written=lambda: self.metrics.actions.labels("update status").inc(),
            on_error=lambda error: self._record_error("update status", error),
        )
        self.warm_nodes = WarmNodes(self.metrics)
        self._next_sweep = 0.0
        self._last_pass_end = -math.inf  # clock time, for the coalescing wait
        self._wake_at = math.inf  # the next pull retry that falls due, from the last plan
        self._scanned_running = False
        # Where stored pods used managed images: what confirms a Learned image.
        self.stored_pods = StoredPodImages(config.registries)
        self.learned_selection = LearnedSelection(images=(), left_out={})
        # image → namespaces whose stored pods or templates use it, as of the last snapshot.
        self._confirming: dict[str, set[str]] = {}
        self._legacy_cleared = False
        # For the report.
        self.last_plan: Plan | None = None  # what the triggers compare changes with
        self._shown_plan: Plan | None = None  # the report's: the last plan, once prepared
        self._report_lock = threading.Lock()
        self._report_planned_at = 0.0
        self._report_plan: Plan | None = None
        self.last_pass: PassInfo | None = None
        self.last_sweep: PassInfo | None = None
        self.passes = 0
        self.api_errors = 0
        self.errors: deque[str] = deque(maxlen=ERROR_LOG)
        self.bad_objects: dict[str, dict[str, str]] = {}  # kind → object key → why skipped
        self.failing_passes = 0  # consecutive passes that raised (a defect, not the API)
        self.started = clock.now()
        self._started_wall = time.monotonic()

    def _informer(
        self,
        kind: str,
        source: Any,
        settings: InformerSettings,
        *,
        resource: str = "",
        transform: Callable[[Obj], Obj] | None = None,
    ) -> Informer:
        resource = resource or INFORMER_RESOURCES[kind]
        page = min(settings.page_size, PAGE_SIZES.get(kind, settings.page_size))
        return Informer(
            kind,
            source,
            clock=self.clock,
            on_event=self._on_change,
            on_error=self._on_watch_error,
            on_request=lambda verb: self.kube.count(verb, resource, None),
            settings=dataclasses.replace(settings, page_size=page),
            transform=transform,
            gate=self._gate,
            after_relist=lambda: self._freed.release(force=True),
        )

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def informers(self) -> tuple[Informer, ...]:
        return (self.nodes, self.images, self.pods, self.starting, *self.demand.informers)

    def start(self) -> None:
        """Start the informers and the loop thread."""
        for informer in self.informers:
            informer.start()
        self._thread = threading.Thread(target=self.run, name="controller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._at_once.set()
        for informer in self.informers:
            informer.stop()
        self.status_writer.stop()
        if self._thread is not None:
            self._thread.join(timeout)
        for informer in self.informers:
            informer.join(timeout=1.0)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def alive(self) -> bool:
        """False once the loop thread has ended (it only should when stopped)."""
        return self._thread is None or self._thread.is_alive()

    def synced(self) -> bool:
        """The caches a pass needs have listed. The built-in template kinds are waited for
        at most TEMPLATE_SYNC_WAIT (so a template's image is not released for a moment at
        start-up); custom kinds, whose CRD may be missing, are not waited for."""
        needed = [self.nodes, self.images, self.pods, self.starting]
        if time.monotonic() - self._started_wall < TEMPLATE_SYNC_WAIT:
            needed += self.demand.required
        return all(informer.synced.is_set() for informer in needed)

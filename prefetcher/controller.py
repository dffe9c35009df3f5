"""The prefetcher's loop, kept apart from its work: when to plan, then plan and carry it out.

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

The pass's parts live in their own modules and the Controller combines them: the snapshot
(`prefetcher.snapshot`), the executor of a plan's writes (`prefetcher.executor`), the
learning sources (`prefetcher.learners`) and what triggers a pass (`prefetcher.triggers`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from imagesync.backoff import Backoff
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
from prefetcher.informer import Change, Clock, Informer, InformerSettings, Obj
from prefetcher.kube import Kube
from prefetcher.learners import ImageLearners
from prefetcher.learnlimits import LearnedSelection
from prefetcher.metrics import Metrics
from prefetcher.model import Plan, PullAction, PullKey, PullRecord, Snapshot
from prefetcher.plangate import PlanGate
from prefetcher.planning.incremental import IncrementalPlanner
from prefetcher.pullpolicy import RewriteWatch
from prefetcher.snapshot import IMAGES, NODES, PODS, STARTING, SnapshotBuilder
from prefetcher.sources.sync import CatalogView, SourceSync
from prefetcher.statuswriter import STATUS_COUNTS_INTERVAL, StatusWriter
from prefetcher.steptime import Stopwatch
from prefetcher.triggers import (
    PLANNED_AT_ONCE,
    image_trigger,
    keeper_holds,
    missed_while_planning,
    node_trigger,
    own_pod_change,
    pulling_on,
    started_trigger,
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

log = logging.getLogger(__name__)

PlanFn = Callable[[Snapshot, Config], Plan]

SWEEP = "sweep"
INFORMER_RESOURCES = {NODES: "nodes", IMAGES: "cachedimages", PODS: "pods", STARTING: "pods"}
# Objects a list page holds, for the caches of large objects: a page is decoded whole before
# the cache keeps its slim form, and a page of 500 keepers of 200 containers each took 1 GiB
# decoded (a Node listing 50 images is 40 kB, a keeper of 200 images 140 kB as JSON).
PAGE_SIZES = {NODES: 100, PODS: 25}
ERROR_LOG = 20
# Clock seconds between leadership checks while idle.
LEADER_CHECK = 5.0
# A pass that stopped on API errors is retried after this, doubling up to the max.
RETRY_PASS_INITIAL = 5.0
RETRY_PASS_MAX = 300.0
# How long a standby's report plan is reused (clock seconds).
REPORT_PLAN_TTL = 10.0
# Wall seconds the first pass waits for the workload template caches once the others are
# ready: long enough for a normal list, short enough that a missing RBAC rule (403, logged)
# or a slow list never stops prefetching.
TEMPLATE_SYNC_WAIT = 30.0


class Controller(ImageLearners, SnapshotBuilder, PlanExecutor):
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
        self._reported_outcomes: dict[str, frozenset[str]] = {}  # puller uid → images
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

    # --- triggers -------------------------------------------------------------------------

    def _on_change(self, change: Change) -> None:
        if change.kind == NODES:
            reason = node_trigger(change)
            self.warm_nodes.node_changed(reason, change.key, change.initial, self.clock.now())
        elif change.kind == IMAGES:
            reason = image_trigger(change)
            if change.new is None:
                self.status_writer.forget(change.key)
            else:
                self.status_writer.seen(change.key)
        elif change.kind == STARTING:
            if change.new is not None:
                self.rewrites.see(change.new)
            # A pod that started (or went) frees its node for pulls held back for it; a pod
            # bound to a node was stored by the API server: it confirms the images it uses,
            # and its node's disk budget gives way to them.
            reason = started_trigger(change.key, self.last_plan) if change.new is None else None
            if change.old is None and change.new is not None:
                node = str((change.new.get("spec") or {}).get("nodeName") or "")
                if pulling_on(node, self.pods.items()):
                    reason = "workload pod starting"  # a puller there may have to yield
                elif not keeper_holds(change.new, self.pods.items()):
                    reason = "workload pod bound"
            if change.new is not None and self.stored_pods.observe(change.new, self.clock.now()):
                reason = "image used by a stored pod"
        elif change.kind != PODS:
            reason = self.demand.on_change(change, self.clock.now())
        else:
            # The watch has seen this pod: our own record of creating it is no longer needed.
            self._created.pop(change.key.rpartition("/")[2], None)
            reason = own_pod_change(change, self.last_plan)
        if reason is not None:
            self.trigger(reason)

    def _on_watch_error(self, verb: str, error: KubeError) -> None:
        self._record_error(verb, error)
        self.metrics.api_error(verb, error)

    def request_sweep(self) -> None:
        """Run a full sweep now instead of at its scheduled time."""
        self._next_sweep = self.clock.now()
        self._wake.set()

    def trigger(self, reason: str) -> None:
        """Ask for a pass soon (after the coalescing wait)."""
        with self._lock:
            self._reasons[reason] += 1
            if reason in PLANNED_AT_ONCE:
                self._at_once.set()
        self._wake.set()

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

    def run(self) -> None:
        """Wait for the caches, then pass on triggers, at due retries and on the sweep schedule."""
        while not self.synced():
            if self._stop.wait(0.05):
                return
        self._next_sweep = self.clock.now()
        memory.leave_full_collections_to_sweeps()
        was_leader = False
        retry = Backoff(RETRY_PASS_INITIAL, RETRY_PASS_MAX)
        while not self._stop.is_set():
            leader = self._is_leader()
            if leader and not was_leader:
                self.trigger("became leader")
            was_leader = leader
            now = self.clock.now()
            due = min(self._next_sweep, self._wake_at)
            if now < due and not self._wake.is_set():
                # Sleep until a trigger or a due time; re-check leadership now and then.
                self._freed.settle()  # the last passes' memory back to the system
                self.clock.wait(self._wake, min(due - now, LEADER_CHECK))
                continue
            if not leader:
                self._take_reasons()
                self.clock.wait(self._stop, LEADER_CHECK)
                continue
            if now < due and now < self._last_pass_end + self.config.pass_coalesce:
                # Passes come at most every passCoalesce: the changes that arrive meanwhile
                # make one pass; a change after a quiet spell is planned at once, and so is a
                # node that joined or turned Ready (its first puller waits for nothing).
                self.clock.wait(
                    self._at_once, self._last_pass_end + self.config.pass_coalesce - now
                )
            reasons = self._take_reasons()
            now = self.clock.now()
            if now >= self._next_sweep:
                trigger = SWEEP
                self._next_sweep = now + self.config.sweep_interval
                # The caches are not listed again: their watches keep them current (a watch
                # that cannot resume relists by itself), as client-go's resync replays its
                # cache and never lists. A relist here had every informer's thread decode
                # its whole kind while the sweep planned (1,000 x 200: the plan took 1.08 s
                # of wall time for 0.58 s of its own CPU).
            elif reasons:
                trigger = ", ".join(sorted(reasons))
            else:
                trigger = "retry due"
            self._wake_at = math.inf
            try:
                self.run_pass(trigger)
                if trigger == SWEEP:
                    memory.collect()  # between passes, not inside a plan
                retry.reset()
                self.failing_passes = 0
            except Stopped:
                if self.last_pass is not None and self.last_pass.aborted:
                    self.metrics.pass_failures.labels("api-errors").inc()
                    self._wake_at = self.clock.now() + retry.next()
            except Exception:  # the loop outlives any one bad pass
                log.exception("pass failed")
                self.metrics.pass_failures.labels("error").inc()
                self.failing_passes += 1
                self._wake_at = self.clock.now() + retry.next()

    def _take_reasons(self) -> Counter[str]:
        with self._lock:
            reasons, self._reasons = self._reasons, Counter()
            self._wake.clear()
            if not self._stop.is_set():
                self._at_once.clear()
        return reasons

    def report_plan(self) -> tuple[Plan, PassInfo | None]:
        """The plan the report shows: the leader's last one. A standby (or a leader before its
        first pass) plans from its own caches without acting, at most every few seconds, since
        /report may reach either replica."""
        with self._report_lock:
            if self._is_leader() and self._shown_plan is not None:
                return self._shown_plan, self.last_pass
            now = self.clock.now()
            if self._report_plan is None or now - self._report_planned_at > REPORT_PLAN_TTL:
                self._report_plan = self._planned(self.snapshot(), full=False)
                self._report_planned_at = now
            return self._report_plan, None

    # --- one pass -------------------------------------------------------------------------

    def _planned(self, snapshot: Snapshot, *, full: bool) -> Plan:
        """The plan of `snapshot`: from scratch at a sweep, else from the previous pass's."""
        if self._plan_fn is not None:
            return self._plan_fn(snapshot, self.config)
        with self._planner_lock:
            return self._planner.full(snapshot) if full else self._planner.plan(snapshot)

    def run_pass(self, trigger: str) -> PassInfo:
        """Snapshot, plan, execute; keep what the report shows."""
        started_wall = time.perf_counter()
        info = PassInfo(trigger=trigger, started=datetime.fromtimestamp(self.clock.now(), UTC))
        if not self._scanned_running:
            self._scan_running_pods(info)
        self._sync_sources(info)
        if self.config.learn_templates and (trigger == SWEEP or not self._excluded_loaded):
            self._load_excluded(info)
        if not self._legacy_cleared:
            self._clear_legacy_pods(info)
        with Stopwatch() as reading:
            snapshot = self.snapshot()
        self._confirm_learned(info)
        # Wall time, its own CPU and the other threads' (informers, report requests): a plan
        # slower than its CPU waited for them, or for other processes. What the watches
        # bring while it plans is decoded once it is the last plan, so the triggers judge
        # those changes against the plan that did not see them.
        with self._gate.closed():
            with Stopwatch() as planning:
                plan = self._planned(snapshot, full=trigger == SWEEP)
            self.last_plan = plan
        info.plan_seconds = planning.took.wall
        self.metrics.plan_seconds.observe(info.plan_seconds)
        self.pull_records = dict(plan.pull_records)
        self.pull_throughput = dict(plan.pull_throughput)

        def ours(name: str) -> Obj | None:
            return self.pods.get(f"{self.config.pod_namespace}/{name}")

        if missed := missed_while_planning(plan, self.starting.get, ours):
            self.trigger(missed)
        self._wake_at = min(self._wake_at, wake_time(plan))
        try:
            self._execute(plan, info)
            self._learn_templates(snapshot, info)
            self.metrics.last_pass_success.set(self.clock.now())
        finally:
            # The report after the writes: a node's new puller waits for no report (0.2 to
            # 1.5 s at 1,000 x 200); meanwhile requests get the last plan's, prepared.
            with Stopwatch() as reporting:
                if self._prepare_report is not None:
                    try:  # before the plan is shown, so no request builds it on its own thread
                        self._prepare_report(plan)
                    except Exception:  # the report's trouble must not stop the passes
                        log.exception("preparing the report")
            self._shown_plan = plan
            info.seconds = time.perf_counter() - started_wall
            self._last_pass_end = self.clock.now()
            self.passes += 1
            self.last_pass = info
            if trigger == SWEEP:
                self.last_sweep = info
                self.metrics.last_sweep.set(self.clock.now())
            self.metrics.sweep_seconds.labels("sweep" if trigger == SWEEP else "change").observe(
                info.seconds
            )
            self.metrics.observe_plan(plan)
            self.warm_nodes.observe(plan, self.clock.now())
            self._freed.release()
        log.info(
            "pass (%s): %d writes planned, done %s, %d already done, %d API errors, "
            "%.3fs (plan %.3fs, %.3fs CPU, %.3fs other threads; snapshot %.3fs, report %.3fs)",
            trigger,
            plan.writes,
            info.actions,
            info.already_done,
            info.api_errors,
            info.seconds,
            info.plan_seconds,
            planning.took.cpu,
            planning.took.others,
            reading.took.wall,
            reporting.took.wall,
            extra={
                "trigger": trigger,
                "writes": sum(info.actions.values()),
                "api_errors": info.api_errors,
                "seconds": round(info.seconds, 4),
                "plan_seconds": round(planning.took.wall, 4),
                "plan_cpu_seconds": round(planning.took.cpu, 4),
                "plan_other_threads_seconds": round(planning.took.others, 4),
            },
        )
        return info

"""The prefetcher's loop, kept apart from its work: when to plan, then plan and carry it out.

A *pass* is: snapshot of the informer caches → the plan → execute the plan's writes.
Passes run when something that matters changed (a node joined, turned Ready or left; a
CachedImage appeared or its spec changed; one of our pods changed) after a short coalescing
wait, and as a full resync *sweep* every `sweep_interval`. A sweep plans from scratch; the
passes between sweeps plan incrementally (`IncrementalPlanner`: work in proportion to what
changed, the same Plan as the pure `plan()`). Only the leader writes; a standby
keeps its caches warm so it can take over at once.

What survives a restart lives in the cluster (our pods carry labels, annotations and
deterministic names; a 409 on create means "done"), so a new process adopts it. What lives
only here — the pull backoff memory and the pods created but not yet seen by the watch —
is lost on a restart, which costs at most one early retry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from imagesync.backoff import Backoff
from imagesync.cachedimage import (
    PlacementProfile,
    format_time,
    merge_profiles,
    new_cached_image,
    object_name,
    planning_spec,
    profile_from_pod,
)
from imagesync.config import Config
from imagesync.kubeclient import KubeError
from imagesync.names import LABEL_MANAGED_BY, MANAGED_BY
from prefetcher import observe, refusals
from prefetcher.confirmation import StoredPodImages, confirmation_patches
from prefetcher.demandwatch import DemandWatch
from prefetcher.informer import Change, Clock, Informer, InformerSettings, Obj, object_key
from prefetcher.kube import Kube, pull_failure_event
from prefetcher.learning import learn_writes
from prefetcher.learnlimits import LearnedSelection, select_learned
from prefetcher.metrics import Metrics
from prefetcher.model import (
    ManagedPod,
    Plan,
    PullAction,
    PullKey,
    PullOutcome,
    PullRecord,
    Snapshot,
    StatusUpdate,
    WantedImage,
    Workload,
)
from prefetcher.planning.incremental import IncrementalPlanner
from prefetcher.pullpolicy import RewriteWatch
from prefetcher.sources.sync import CatalogView, SourceSync

log = logging.getLogger(__name__)

T = TypeVar("T")
PlanFn = Callable[[Snapshot, Config], Plan]
# Called before every write with its kind; tests use it to stop a process mid-sweep.
WriteHook = Callable[[str], None]

NODES, IMAGES, PODS, STARTING = "Node", "CachedImage", "Pod", "StartingPod"
SWEEP = "sweep"
INFORMER_RESOURCES = {NODES: "nodes", IMAGES: "cachedimages", PODS: "pods", STARTING: "pods"}
# A chunk of at least this many writes that all failed ends the pass (the API server is
# struggling); the next pass retries after a backoff.
MAX_CHUNK_ERRORS = 5
# How long a pod we created (or deleted) may stay unseen by the watch before we stop
# assuming it exists (or is going); normally the watch shows it within a second.
# Wall seconds: the watch lags most when the cluster is busiest, whatever the clock's pace.
PENDING_WRITE_TTL = 300.0
ERROR_LOG = 20
# Clock seconds between leadership checks while idle.
LEADER_CHECK = 5.0
# A pass that stopped on API errors is retried after this, doubling up to the max.
RETRY_PASS_INITIAL = 5.0
RETRY_PASS_MAX = 300.0
# How long a standby's report plan is reused (clock seconds).
REPORT_PLAN_TTL = 10.0
# A CachedImage's status counts (nodesWanted, nodesPresent) are rewritten at most this often
# (clock seconds): while a fleet converges they change with every pass, and the report is
# the live view. Score and lastError changes are written at once.
STATUS_COUNTS_INTERVAL = 30.0
COUNT_FIELDS = frozenset({"nodesWanted", "nodesPresent"})
# Wall seconds the first pass waits for the workload template caches once the others are
# ready: long enough for a normal list, short enough that a missing RBAC rule (403, logged)
# or a slow list never stops prefetching.
TEMPLATE_SYNC_WAIT = 30.0


@dataclass
class PassInfo:
    """One pass as the report shows it."""

    trigger: str
    started: datetime
    seconds: float = 0.0
    plan_seconds: float = 0.0
    actions: dict[str, int] = field(default_factory=dict)
    already_done: int = 0
    api_errors: int = 0
    aborted: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "trigger": self.trigger,
            "started": format_time(self.started),
            "seconds": round(self.seconds, 4),
            "planSeconds": round(self.plan_seconds, 4),
            "actions": dict(self.actions),
            "alreadyDone": self.already_done,
            "apiErrors": self.api_errors,
            "aborted": self.aborted,
        }


class Stopped(Exception):
    """Raised inside a pass when this replica must stop writing (leadership lost, shutdown)."""


def _ready(obj: Mapping[str, Any] | None) -> bool:
    for condition in ((obj or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def _node_shape(obj: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """What about a node changes a plan (heartbeats do not)."""
    obj = obj or {}
    spec = obj.get("spec") or {}
    return (
        _ready(obj),
        bool(spec.get("unschedulable")),
        repr(spec.get("taints") or []),
        repr(sorted(((obj.get("metadata") or {}).get("labels") or {}).items())),
    )


def node_trigger(change: Change) -> str | None:
    """Why a node change needs a pass now, or None (a heartbeat, an image list refresh)."""
    if change.new is None:
        return "node removed"
    if change.old is None:
        return "node joined"
    if _ready(change.new) and not _ready(change.old):
        return "node ready"
    if _node_shape(change.old) != _node_shape(change.new):
        return "node changed"
    return None


def image_trigger(change: Change) -> str | None:
    """A new, removed or re-specified CachedImage needs a pass now; a status update does not."""
    if change.new is None:
        return "image removed"
    if change.old is None:
        return "new image"
    if planning_spec(change.old.get("spec")) != planning_spec(change.new.get("spec")):
        return "image changed"
    return None


def wake_time(plan: Plan) -> float:
    """When `plan` says it would change by itself (epoch seconds), or infinity.

    A retry already due but held back (caps, quiet hours) is started by the pass that a
    freed slot triggers, not by spinning here: the planner only names future moments."""
    return plan.wake_at.timestamp() if plan.wake_at is not None else math.inf


class Controller:
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
    ) -> None:
        self.kube = kube
        self.config = config
        self.clock = clock
        self.metrics = metrics
        self._plan_fn = plan_fn
        self._planner = IncrementalPlanner(config)
        self._planner_lock = threading.Lock()
        self._is_leader = is_leader
        self._before_write = before_write
        self.sources = SourceSync(config, catalog)
        settings = informer_settings or InformerSettings(watch_timeout=int(config.watch_timeout))
        self.nodes = self._informer(NODES, kube.node_source(), settings)
        self.images = self._informer(IMAGES, kube.cached_image_source(), settings)
        self.pods = self._informer(PODS, kube.own_pod_source(), settings)
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
        self._lock = threading.Lock()
        self._reasons: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._snapshot_lock = threading.Lock()
        self._memo: dict[str, dict[str, tuple[str, Any]]] = {}
        # Memory between passes.
        self.pull_records: dict[PullKey, PullRecord] = {}
        self._created: dict[str, tuple[dict[str, Any], float]] = {}
        self._deleted: dict[str, float] = {}
        self._reported_outcomes: set[tuple[str, str]] = set()  # (pod uid, image)
        self._refused: list[tuple[PullAction, KubeError]] = []  # this pass's refused pullers
        self._counts_written: dict[str, float] = {}  # CachedImage → clock of the last count write
        self._warming: dict[str, float] = {}
        self.warm_times: dict[str, float] = {}
        self._next_sweep = 0.0
        self._wake_at = math.inf  # the next pull retry that falls due, from the last plan
        self._scanned_running = False
        # Where stored pods used managed images: what confirms a Learned image.
        self.stored_pods = StoredPodImages(config.registries)
        self.learned_selection = LearnedSelection(images=(), left_out={})
        # image → namespaces whose stored pods or templates use it, as of the last snapshot.
        self._confirming: dict[str, set[str]] = {}
        self._legacy_cleared = False
        # For the report.
        self.last_plan: Plan | None = None
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
        return Informer(
            kind,
            source,
            clock=self.clock,
            on_event=self._on_change,
            on_error=self._on_watch_error,
            on_request=lambda verb: self.kube.count(verb, resource, None),
            settings=settings,
            transform=transform,
        )

    # --- triggers -------------------------------------------------------------------------

    def _on_change(self, change: Change) -> None:
        if change.kind == NODES:
            reason = node_trigger(change)
            if reason in ("node joined", "node ready") and not change.initial:
                self._warming.setdefault(change.key, self.clock.now())
            elif reason == "node removed":
                self._warming.pop(change.key, None)
                self.warm_times.pop(change.key, None)
        elif change.kind == IMAGES:
            reason = image_trigger(change)
        elif change.kind == STARTING:
            if change.new is not None:
                self.rewrites.see(change.new)
            # A pod that started (or went) frees its node for pulls held back for it; a pod
            # bound to a node was stored by the API server: it confirms the images it uses.
            reason = "workload pod started" if change.new is None else None
            if change.new is not None and self.stored_pods.observe(change.new, self.clock.now()):
                reason = "image used by a stored pod"
        elif change.kind != PODS:
            reason = self.demand.on_change(change, self.clock.now())
        else:
            # The watch has seen this pod: our own record of creating it is no longer needed.
            self._created.pop(change.key.rpartition("/")[2], None)
            reason = "pod changed"
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
        for informer in self.informers:
            informer.stop()
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
                self.clock.wait(self._wake, min(due - now, LEADER_CHECK))
                continue
            if not leader:
                self._take_reasons()
                self.clock.wait(self._stop, LEADER_CHECK)
                continue
            if now < due:
                # Coalesce a burst of changes into one pass.
                self.clock.wait(self._stop, self.config.pass_coalesce)
            reasons = self._take_reasons()
            now = self.clock.now()
            if now >= self._next_sweep:
                trigger = SWEEP
                self._next_sweep = now + self.config.sweep_interval
                if self.passes:
                    # Compare the caches with fresh lists; differences trigger another pass.
                    for informer in self.informers:
                        informer.resync()
                names = {str(obj["metadata"]["name"]) for obj in self.images.items()}
                self._counts_written = {
                    name: at for name, at in self._counts_written.items() if name in names
                }
            elif reasons:
                trigger = ", ".join(sorted(reasons))
            else:
                trigger = "retry due"
            self._wake_at = math.inf
            try:
                self.run_pass(trigger)
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
        return reasons

    def report_plan(self) -> tuple[Plan, PassInfo | None]:
        """The plan the report shows: the leader's last one. A standby (or a leader before its
        first pass) plans from its own caches without acting, at most every few seconds, since
        /report may reach either replica."""
        with self._report_lock:
            if self._is_leader() and self.last_plan is not None:
                return self.last_plan, self.last_pass
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

    def snapshot(self) -> Snapshot:
        """The caches (plus our writes the watch has not shown yet) as the planner's input."""
        with self._snapshot_lock:
            now = self.clock.now()
            nodes = self._converted(NODES, self.nodes.items(), observe.node_info)
            moment = datetime.fromtimestamp(now, UTC)
            demand = self.demand.demand(moment, self._converted)
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
        snapshot = self.snapshot()
        self._confirm_learned(info)
        plan_started = time.perf_counter()
        plan = self._planned(snapshot, full=trigger == SWEEP)
        info.plan_seconds = time.perf_counter() - plan_started
        self.metrics.plan_seconds.observe(info.plan_seconds)
        self.pull_records = dict(plan.pull_records)
        self.last_plan = plan
        self._wake_at = min(self._wake_at, wake_time(plan))
        try:
            self._execute(plan, info)
            self._learn_templates(snapshot, info)
            self.metrics.last_pass_success.set(self.clock.now())
        finally:
            info.seconds = time.perf_counter() - started_wall
            self.passes += 1
            self.last_pass = info
            if trigger == SWEEP:
                self.last_sweep = info
                self.metrics.last_sweep.set(self.clock.now())
            self.metrics.sweep_seconds.labels("sweep" if trigger == SWEEP else "change").observe(
                info.seconds
            )
            self.metrics.observe_plan(plan)
            self._observe_warm_nodes(plan)
        log.info(
            "pass (%s): %d writes planned, done %s, %d already done, %d API errors, "
            "%.3fs (plan %.3fs)",
            trigger,
            plan.writes,
            info.actions,
            info.already_done,
            info.api_errors,
            info.seconds,
            info.plan_seconds,
            extra={
                "trigger": trigger,
                "writes": sum(info.actions.values()),
                "api_errors": info.api_errors,
                "seconds": round(info.seconds, 4),
            },
        )
        return info

    def _guard(self, kind: str) -> None:
        if self._stop.is_set() or not self._is_leader():
            raise Stopped(kind)
        if self._before_write is not None:
            self._before_write(kind)

    def _execute(self, plan: Plan, info: PassInfo) -> None:
        """Carry out the plan in its order: keepers, deletions, pulls, taints, statuses, events.

        Writes of one kind go out in parallel (`write_workers`), in chunks; every write is
        idempotent, and errors are counted, not fatal, unless a whole chunk fails.
        """
        batches: list[tuple[str, list[Callable[[], bool]]]] = [
            ("create keeper", [partial(self._create, k.pod) for k in plan.keepers]),
            ("delete pod", [partial(self._delete, d.name, d.uid) for d in plan.deletions]),
            ("start pull", [partial(self._start_pull, p) for p in plan.pulls]),
            (
                "remove taint",
                [partial(self._remove_taint, r.node, r.key) for r in plan.taint_removals],
            ),
            (
                "update status",
                [
                    partial(self.kube.patch_cached_image_status, u.name, u.patch)
                    for u in self._status_writes(plan)
                ],
            ),
        ]
        try:
            for kind, actions in batches:
                self._run_batch(kind, actions, info)
            self._run_batch("create event", self._outcome_events(plan), info)
        except Stopped:
            if info.aborted:
                log.warning("pass stopped early: %s", info.aborted, extra={"reason": info.aborted})
            raise
        finally:
            self._record_refusals(plan, info)

    def _status_writes(self, plan: Plan) -> list[StatusUpdate]:
        """The plan's status patches, less count-only ones written too recently (they are
        planned again, and written once STATUS_COUNTS_INTERVAL has passed)."""
        now = self.clock.now()
        out: list[StatusUpdate] = []
        for update in plan.status_updates:
            last = self._counts_written.get(update.name)
            if update.patch.keys() <= COUNT_FIELDS and last is not None:
                due = last + STATUS_COUNTS_INTERVAL
                if now < due:
                    self._wake_at = min(self._wake_at, due)
                    continue
            if update.patch.keys() & COUNT_FIELDS:
                self._counts_written[update.name] = now
            out.append(update)
        return out

    def _run_batch(self, kind: str, actions: list[Callable[[], bool]], info: PassInfo) -> None:
        chunk = max(1, 2 * self.config.write_workers)
        for start in range(0, len(actions), chunk):
            outcomes = list(
                self._writer().map(partial(self._attempt, kind), actions[start : start + chunk])
            )
            errors = [o for o in outcomes if isinstance(o, KubeError)]
            for outcome in outcomes:
                if isinstance(outcome, KubeError):
                    info.api_errors += 1
                    self._record_error(kind, outcome)
                elif outcome:
                    info.actions[kind] = info.actions.get(kind, 0) + 1
                    self.metrics.actions.labels(kind).inc()
                else:
                    info.already_done += 1
            if len(errors) == len(outcomes) and len(errors) >= MAX_CHUNK_ERRORS:
                info.aborted = f"{len(errors)} of {len(outcomes)} {kind} failed; last: {errors[-1]}"
                raise Stopped(kind)

    def _attempt(self, kind: str, action: Callable[[], bool]) -> bool | KubeError:
        """One write on a worker thread: True done, False already done, or the error."""
        self._guard(kind)
        try:
            return action()
        except KubeError as exc:
            return exc

    def _writer(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self.config.write_workers, thread_name_prefix="writer"
            )
        return self._pool

    def _start_pull(self, pull: PullAction) -> bool:
        try:
            created = self._create(pull.pod)
        except KubeError as exc:
            if refusals.is_refusal(exc.status):
                self._refused.append((pull, exc))  # list.append: safe from writer threads
            raise
        if created:
            self.metrics.pull_started(pull.images, pull.urgent)
        return created

    def _record_error(self, what: str, error: KubeError) -> None:
        self.api_errors += 1
        stamp = format_time(datetime.fromtimestamp(self.clock.now(), UTC))
        self.errors.append(f"{stamp} {what}: {error}")
        log.warning("%s failed: %s", what, error, extra={"action": what, "status": error.status})

    def _create(self, manifest: Mapping[str, Any]) -> bool:
        created = self.kube.create_pod(manifest)
        name = str(manifest["metadata"]["name"])
        self._created[name] = (dict(manifest), time.monotonic())
        return created

    def _create_image(self, body: Mapping[str, Any]) -> bool:
        """Create a CachedImage; False when it already exists."""
        return self.kube.create_cached_image(body) is not None

    def _delete(self, name: str, uid: str) -> bool:
        deleted = self.kube.delete_pod(name, uid)
        if uid:
            self._deleted[uid] = time.monotonic()
        return deleted

    def _remove_taint(self, node: str, key: str) -> bool:
        obj = self.nodes.get(node)
        return obj is not None and self.kube.remove_taint(obj, key)

    def _outcome_events(self, plan: Plan) -> list[Callable[[], bool]]:
        """Metrics for each finished puller, once per pod; an Event for each failure."""
        live = {obj["metadata"].get("uid") for obj in self.pods.items()}
        self._reported_outcomes = {k for k in self._reported_outcomes if k[0] in live}
        events: list[Callable[[], bool]] = []
        for outcome in plan.outcomes:
            key = (outcome.pod_uid, outcome.image)
            if key in self._reported_outcomes:
                continue
            self._reported_outcomes.add(key)
            self.metrics.pull_finished(outcome)
            if outcome.succeeded:
                continue
            log.warning(
                "pull of %s on %s failed: %s: %s",
                outcome.image,
                outcome.node,
                outcome.reason,
                outcome.message,
                extra={"node": outcome.node, "image": outcome.image, "reason": outcome.reason},
            )
            events.append(partial(self._event, self._failure_event(outcome, plan.now)))
        return events

    def _record_refusals(self, plan: Plan, info: PassInfo) -> None:
        """Refused pullers become failed pulls: backoff records (the report shows `failed`
        with the server's reason and a hint), the failure metric, an Event each, and a pass
        soon so the report stops saying "puller starting"."""
        refused, self._refused = self._refused, []
        if not refused:
            return
        events: list[Callable[[], bool]] = []
        for pull, error in refused:
            records, outcomes = refusals.refused_pull(
                pull, error.status, str(error), self.pull_records, plan.now
            )
            for record in records:
                self.pull_records[(record.node, record.image)] = record
            for outcome in outcomes:
                self.metrics.pull_finished(outcome)
            events.append(partial(self._event, self._failure_event(outcomes[0], plan.now)))
        log.warning(
            "%d puller(s) refused by the API server; first: %s", len(refused), refused[0][1]
        )
        with contextlib.suppress(Stopped):
            self._run_batch("create event", events, info)
        self.trigger("puller refused")

    def _failure_event(self, outcome: PullOutcome, now: datetime) -> dict[str, Any]:
        return pull_failure_event(
            namespace=self.kube.pod_namespace,
            pod=outcome.pod,
            pod_uid="" if outcome.kind == refusals.REFUSED_KIND else outcome.pod_uid,
            node=outcome.node,
            image=outcome.image,
            reason=outcome.reason,
            message=outcome.message,
            now=format_time(now),
        )

    def _event(self, event: Mapping[str, Any]) -> bool:
        self.kube.create_event(event)
        return True

    def _observe_warm_nodes(self, plan: Plan) -> None:
        """Time to warm: from a node joining (or turning Ready) to all its wanted images present.

        A node that wants nothing yet (or is not eligible) keeps its start time but is not
        shown as waiting."""
        now = self.clock.now()
        waiting: dict[str, float] = {}
        for node in plan.nodes if self._warming else ():
            since = self._warming.get(node.name)
            if since is None or not node.eligible or node.wanted == 0:
                continue
            if node.present >= node.wanted:
                self.metrics.node_warm_seconds.observe(now - since)
                self.warm_times[node.name] = now - since
                del self._warming[node.name]
                log.info(
                    "node %s warm after %.0fs: %d images present",
                    node.name,
                    now - since,
                    node.present,
                    extra={"node": node.name, "seconds": round(now - since, 3)},
                )
            else:
                waiting[node.name] = since
        self.metrics.observe_warming(waiting)

    # --- an upgrade leaves no pods in the old namespace -----------------------------------

    def _clear_legacy_pods(self, info: PassInfo) -> None:
        """Delete the puller and keeper pods an older release ran in our own namespace.

        Releases before the pod namespace created them next to the prefetcher; nothing else
        would ever delete them (their names are not planned any more, and a Node's deletion
        only collects the pods of that node). Their images stay on the nodes and are found
        present again by the new keepers' and pullers' no-op pulls. Once none is left, never
        looked at again.
        """
        deleted = 0
        try:
            pods = self.kube.legacy_pods()
            for pod in pods:
                meta = pod["metadata"]
                if meta.get("deletionTimestamp"):
                    continue
                self._guard("delete legacy pod")
                if self.kube.delete_pod(
                    str(meta["name"]), str(meta.get("uid") or ""), namespace=self.kube.namespace
                ):
                    deleted += 1
        except KubeError as exc:
            info.api_errors += 1
            self._record_error("delete pods left in the old namespace (retried next pass)", exc)
            return
        finally:
            if deleted:
                info.actions["delete legacy pod"] = deleted
                log.info(
                    "deleted %d puller / keeper pod(s) left in %s by an older release",
                    deleted,
                    self.kube.namespace,
                )
        self._legacy_cleared = not pods

    # --- Observed and Catalog sources ----------------------------------------------------

    def _sync_sources(self, info: PassInfo) -> None:
        """Write the Observed and Catalog CachedImages the sources want now; the watch then
        brings them into the snapshot (this pass or the next)."""
        with self._snapshot_lock:
            nodes = self._converted(NODES, self.nodes.items(), observe.node_info)
            pods = self._converted(PODS, self.pods.items(), observe.managed_pod)
        ours = observe.present_images(pod for pod in pods if pod is not None)
        now = datetime.fromtimestamp(self.clock.now(), UTC)
        writes = self.sources.writes(nodes, self.images.items(), now, ours)
        self.metrics.observe_sources(self.sources.observed_count, len(self.sources.nodes_at_cap))
        if not writes:
            return
        kube = self.kube
        self._run_batch(
            "create image", [partial(self._create_image, b) for b in writes.creates], info
        )
        self._run_batch(
            "patch image",
            [partial(kube.patch_cached_image_spec, n, p) for n, p in writes.spec_patches],
            info,
        )
        self._run_batch(
            "update status",
            [partial(kube.patch_cached_image_status, n, p) for n, p in writes.status_patches],
            info,
        )
        self._run_batch(
            "delete image",
            [partial(kube.delete_cached_image, n, u) for n, u in writes.deletes],
            info,
        )

    # --- images known before their pods: workload templates --------------------------------

    def _load_excluded(self, info: PassInfo) -> None:
        """The namespaces that opted out (their templates teach nothing); kept on errors."""
        try:
            excluded = self.demand.left_out(self.kube.excluded_namespaces())
            self._excluded_loaded = True
        except KubeError as exc:
            info.api_errors += 1
            self._record_error("list excluded namespaces (retried next pass)", exc)
            return
        if excluded != self.demand.excluded:
            self.demand.excluded = excluded
            for kind in self.demand.templates:  # their conversions depend on the set
                self._memo.pop(kind, None)

    def _learn_templates(self, snapshot: Snapshot, info: PassInfo) -> None:
        """Create or complete the CachedImages of template images (no write once known);
        not before the namespaces that opted out are known."""
        if not self.config.learn_templates or not self._excluded_loaded:
            return
        stamp = format_time(snapshot.now)
        actions: list[Callable[[], bool]] = []
        for write in learn_writes(snapshot.demand.workloads, self.images.items(), stamp):
            if write.body is not None:
                actions.append(partial(self._create_image, write.body))
            else:
                actions.append(
                    partial(
                        self.kube.patch_cached_image_profiles,
                        write.name,
                        list(write.profiles),
                        write.resource_version,
                    )
                )
        self._run_batch("learn image", actions, info)

    # --- learned images: confirmed by stored pods; a fresh install learns from running pods

    def _confirm_learned(self, info: PassInfo) -> None:
        """Write the namespaces where stored pods or stored workload templates (as the last
        snapshot found them) used each Learned image into its status, so the image stays
        confirmed after a rollout drops it (it is then released, not forgotten) and a
        restarted or new leader knows them too."""
        stamp = format_time(datetime.fromtimestamp(self.clock.now(), UTC))
        seen = self._confirming
        patches = confirmation_patches(self.images.items(), seen, stamp) if seen else []
        with contextlib.suppress(Stopped):
            self._run_batch(
                "confirm image",
                [partial(self.kube.patch_cached_image_status, name, p) for name, p in patches],
                info,
            )

    def _scan_running_pods(self, info: PassInfo) -> None:
        """Once: running pods confirm the images they use (an upgrade keeps every image in
        use); with `learnRunningPods`, images without a CachedImage are created as well.

        The webhook learns from pods as they are created; pods that started before image-sync
        was installed would otherwise stay unknown until they are re-created. An image that
        already has a CachedImage is left to the webhook.
        """
        from webhook.mutation import decide  # the webhook's own rule for what is managed

        now = self.clock.now()
        try:
            excluded = self.kube.excluded_namespaces()
            sightings: dict[str, list[PlacementProfile]] = {}
            for pod in self.kube.running_pods():
                self.stored_pods.observe(pod, now)
                meta = pod.get("metadata") or {}
                namespace = str(meta.get("namespace") or "")
                labels = meta.get("labels") or {}
                if namespace in excluded or labels.get(LABEL_MANAGED_BY) == MANAGED_BY:
                    continue
                if not self.config.learn_running_pods:
                    continue
                images = decide(pod, self.config).images
                if not images:
                    continue
                profile = profile_from_pod(pod, namespace)
                for image in images:
                    sightings.setdefault(image, []).append(profile)
        except KubeError as exc:
            info.api_errors += 1
            self._record_error("scan running pods (retried next pass)", exc)
            return
        known = {str((obj.get("spec") or {}).get("image") or "") for obj in self.images.items()} | {
            str(obj["metadata"]["name"]) for obj in self.images.items()
        }
        moment = datetime.fromtimestamp(now, UTC)
        stamp = format_time(moment)
        for image, profiles in sorted(sightings.items()):
            if image in known or object_name(image) in known:
                continue
            seen: list[PlacementProfile] = []
            for profile in profiles:
                stamped = profile.copy()
                stamped["lastSeen"] = stamp
                seen.append(stamped)
            body = new_cached_image(image, merge_profiles([], seen))
            try:
                self._guard("learn image")
                version = self.kube.create_cached_image(body)
                if version:
                    info.actions["learn image"] = info.actions.get("learn image", 0) + 1
                    self._seed_usage(image, version, len(profiles), moment)
            except KubeError as exc:
                info.api_errors += 1
                self._record_error(f"learn {image}", exc)
                return
        self._scanned_running = True

    def _seed_usage(self, image: str, version: str, uses: int, now: datetime) -> None:
        """The first counts of an image just created, only onto the version created: if the
        webhook has written counts since, they stand (never overwritten)."""
        stamp = format_time(now)
        try:
            self.kube.patch_cached_image_status(
                object_name(image),
                {
                    "lastSeen": stamp,
                    "useCount": uses,
                    "dailyUses": {now.strftime("%Y-%m-%d"): uses},
                },
                resource_version=version,
            )
        except KubeError as exc:
            if not exc.conflict:
                raise
            log.info("not seeding the counts of %s: the webhook has written them", image)

"""One pass of the prefetcher: snapshot, plan, execute, and keep what the report shows.

A sweep plans from scratch; the passes between sweeps plan incrementally
(`IncrementalPlanner`: work in proportion to what changed, the same Plan as the pure
`plan()`). A standby plans for the report only, from its own caches, without acting.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from imagesync.config import Config
from prefetcher import memory
from prefetcher.executor import PassInfo
from prefetcher.informer import Clock, Informer, Obj
from prefetcher.metrics import Metrics
from prefetcher.model import Plan, PullKey, PullRecord, Snapshot
from prefetcher.plangate import PlanGate
from prefetcher.planning.incremental import IncrementalPlanner
from prefetcher.steptime import Stopwatch
from prefetcher.triggers import missed_while_planning, wake_time
from prefetcher.warmnodes import WarmNodes

# The controller's logger: admins filter the pass log and its failures by it.
log = logging.getLogger("prefetcher.controller")

PlanFn = Callable[[Snapshot, Config], Plan]

SWEEP = "sweep"
# How long a standby's report plan is reused (clock seconds).
REPORT_PLAN_TTL = 10.0


class PassRunner:
    """The Controller's pass: the plan of a snapshot, carried out, then shown by the report."""

    config: Config
    clock: Clock
    metrics: Metrics
    pods: Informer
    starting: Informer
    warm_nodes: WarmNodes
    pull_records: dict[PullKey, PullRecord]
    pull_throughput: dict[str, float]
    last_plan: Plan | None
    last_pass: PassInfo | None
    last_sweep: PassInfo | None
    passes: int
    _plan_fn: PlanFn | None
    _planner: IncrementalPlanner
    _planner_lock: threading.Lock
    _gate: PlanGate
    _freed: memory.FreedMemory
    _prepare_report: Callable[[Plan], None] | None
    _shown_plan: Plan | None
    _report_lock: threading.Lock
    _report_planned_at: float
    _report_plan: Plan | None
    _excluded_loaded: bool
    _scanned_running: bool
    _legacy_cleared: bool
    _wake_at: float
    _last_pass_end: float
    _is_leader: Callable[[], bool]

    if TYPE_CHECKING:

        def trigger(self, reason: str) -> None: ...

        def snapshot(self) -> Snapshot: ...

        def _execute(self, plan: Plan, info: PassInfo) -> None: ...

        def _scan_running_pods(self, info: PassInfo) -> None: ...

        def _sync_sources(self, info: PassInfo) -> None: ...

        def _load_excluded(self, info: PassInfo) -> None: ...

        def _clear_legacy_pods(self, info: PassInfo) -> None: ...

        def _confirm_learned(self, info: PassInfo) -> None: ...

        def _learn_templates(self, snapshot: Snapshot, info: PassInfo) -> None: ...

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

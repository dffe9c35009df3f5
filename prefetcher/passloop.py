"""When the prefetcher passes: the watches' changes as triggers, and the loop that coalesces them.

Passes run when something that matters changed (`prefetcher.triggers` says what does), at
most one every `pass_coalesce` (a change after a quiet spell is planned at once, a burst
waits for the next slot and makes one pass), at a pull retry that falls due, and as a full
resync *sweep* every `sweep_interval`. Only the leader passes.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from imagesync.backoff import Backoff
from imagesync.config import Config
from imagesync.kubeclient import KubeError
from prefetcher import memory
from prefetcher.confirmation import StoredPodImages
from prefetcher.demandwatch import DemandWatch
from prefetcher.executor import PassInfo, Stopped
from prefetcher.informer import Change, Clock, Informer
from prefetcher.metrics import Metrics
from prefetcher.model import Plan
from prefetcher.passrun import SWEEP
from prefetcher.pullpolicy import RewriteWatch
from prefetcher.snapshot import IMAGES, NODES, PODS, STARTING
from prefetcher.statuswriter import StatusWriter
from prefetcher.triggers import (
    PLANNED_AT_ONCE,
    image_trigger,
    keeper_holds,
    node_trigger,
    own_pod_change,
    pulling_on,
    started_trigger,
)
from prefetcher.warmnodes import WarmNodes

# The controller's logger: admins filter the pass log and its failures by it.
log = logging.getLogger("prefetcher.controller")

# Clock seconds between leadership checks while idle.
LEADER_CHECK = 5.0
# A pass that stopped on API errors is retried after this, doubling up to the max.
RETRY_PASS_INITIAL = 5.0
RETRY_PASS_MAX = 300.0


class PassLoop:
    """The Controller's loop: triggers from the informers, and passes when they are due."""

    config: Config
    clock: Clock
    metrics: Metrics
    pods: Informer
    demand: DemandWatch
    rewrites: RewriteWatch
    status_writer: StatusWriter
    warm_nodes: WarmNodes
    stored_pods: StoredPodImages
    last_plan: Plan | None
    last_pass: PassInfo | None
    failing_passes: int
    _freed: memory.FreedMemory
    _wake: threading.Event
    _at_once: threading.Event
    _stop: threading.Event
    _lock: threading.Lock
    _reasons: Counter[str]
    _created: dict[str, tuple[dict[str, Any], float]]
    _next_sweep: float
    _last_pass_end: float
    _wake_at: float
    _is_leader: Callable[[], bool]

    if TYPE_CHECKING:

        def _record_error(self, what: str, error: KubeError) -> None: ...

        def synced(self) -> bool: ...

        def run_pass(self, trigger: str) -> PassInfo: ...

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

    def run(self) -> None:
        """Wait for the caches, then pass on triggers, at due retries and on the sweep schedule."""
        while not self.synced():
            if self._stop.wait(0.05):
                return
        self._next_sweep = self.clock.now()
        memory.keep_collections_out_of_passes()
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

"""Carrying out a Plan, kept apart from deciding when to plan: batches of writes, refusals, events."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from imagesync.cachedimage import format_time
from imagesync.config import Config
from imagesync.kubeclient import KubeError
from prefetcher import observe, refusals
from prefetcher.events import pull_failure_event, puller_event
from prefetcher.informer import Clock, Informer
from prefetcher.kube import Kube
from prefetcher.metrics import Metrics
from prefetcher.model import (
    Plan,
    PodDeletion,
    PullAction,
    PullKey,
    PullOutcome,
    PullRecord,
)
from prefetcher.pulloutcomes import ReportedOutcomes
from prefetcher.statuswriter import StatusWriter

# The controller's logger: admins filter the prefetcher's write failures by it.
log = logging.getLogger("prefetcher.controller")

# Called before every write with its kind; tests use it to stop a process mid-sweep.
WriteHook = Callable[[str], None]
# A chunk of at least this many writes that all failed ends the pass (the API server is
# struggling); the next pass retries after a backoff.
MAX_CHUNK_ERRORS = 5
# Wall seconds a pass spends on writes that can wait (creating keepers, deleting finished
# pullers and replaced keepers), each; the rest wait for the next pass (`_execute`).
CAN_WAIT_SECONDS = 5.0


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


class PlanExecutor:
    """The Controller's writes: a plan's batches, one write each, and the errors they meet."""

    kube: Kube
    config: Config
    clock: Clock
    metrics: Metrics
    nodes: Informer
    pods: Informer
    pull_records: dict[PullKey, PullRecord]
    api_errors: int
    errors: deque[str]
    _stop: threading.Event
    _is_leader: Callable[[], bool]
    _before_write: WriteHook | None
    _pool: ThreadPoolExecutor | None
    _created: dict[str, tuple[dict[str, Any], float]]
    _deleted: dict[str, float]
    _outcomes_reported: ReportedOutcomes
    _reported_yields: set[str]
    _refused: list[tuple[PullAction, KubeError]]
    status_writer: StatusWriter
    _wake_at: float
    _at_once: threading.Event  # a node that joined or turned Ready waits for the next pass

    if TYPE_CHECKING:

        def trigger(self, reason: str) -> None: ...

    def _guard(self, kind: str) -> None:
        if self._stop.is_set() or not self._is_leader():
            raise Stopped(kind)
        if self._before_write is not None:
            self._before_write(kind)

    def _execute(self, plan: Plan, info: PassInfo) -> None:
        """Carry out the plan: pullers that yield, pulls, keepers, the other deletions, taints,
        events; the CachedImage statuses go to the status writer, which sends them on its
        own thread (`prefetcher.statuswriter`): up to one per image, the pass waits for none.

        A node waits for its next puller only for the writes that matter: new pulls go
        before keepers (a finished puller holds its images until a keeper does) and before
        the clean-up of finished pullers (as many deletions as pulls while a fleet
        converges). A pass spends at most CAN_WAIT_SECONDS creating keepers and as long
        deleting finished pullers, the rest in the passes that follow at once: a keeper holds
        hundreds of containers, a node's keeper frees twenty pullers, and a fleet whose nodes
        finish together would otherwise hold up every node's next pull for as long as the
        API server takes to store hundreds of keepers and delete thousands of pods. A node
        that joins or turns Ready meanwhile ends those two batches at once: its first puller
        is planned by the next pass, not after seconds of another node's clean-up.
        Writes of one kind go out in parallel (`write_workers`), in chunks; every write is
        idempotent, and errors are counted, not fatal, unless a whole chunk fails.
        """
        yields = [d for d in plan.deletions if d.yielded_to]
        others = [d for d in plan.deletions if not d.yielded_to]
        keepers: list[Callable[[], bool]] = [partial(self._create, k.pod) for k in plan.keepers]
        cleanup: list[Callable[[], bool]] = [partial(self._delete, d.name, d.uid) for d in others]
        batches: list[tuple[str, list[Callable[[], bool]]]] = [
            ("delete pod", [partial(self._delete, d.name, d.uid) for d in yields]),
            ("start pull", [partial(self._start_pull, p) for p in plan.pulls]),
            ("create keeper", keepers),
            ("delete pod", cleanup),
            (
                "remove taint",
                [partial(self._remove_taint, r.node, r.key) for r in plan.taint_removals],
            ),
        ]
        try:
            for kind, actions in batches:
                budget = CAN_WAIT_SECONDS if actions is keepers or actions is cleanup else None
                if self._run_batch(kind, actions, info, budget) < len(actions):
                    self._wake_at = min(self._wake_at, self.clock.now())  # the rest next pass
            # After the pods' writes, which a node's next pull waits for; not waited for.
            self.status_writer.offer(plan.status_updates)
            events = self._outcome_events(plan) + self._yield_events(plan)
            self._run_batch("create event", events, info)
        except Stopped:
            if info.aborted:
                log.warning("pass stopped early: %s", info.aborted, extra={"reason": info.aborted})
            raise
        finally:
            self._record_refusals(plan, info)

    def _run_batch(
        self,
        kind: str,
        actions: list[Callable[[], bool]],
        info: PassInfo,
        budget: float | None = None,
    ) -> int:
        """Send `actions` in chunks; with a `budget` (wall seconds), no new chunk once it is
        spent or a node waits to be planned at once. Returns how many were sent."""
        chunk = max(1, 2 * self.config.write_workers)
        deadline = None if budget is None else time.monotonic() + budget
        for start in range(0, len(actions), chunk):
            if (
                deadline is not None
                and start
                and (time.monotonic() >= deadline or self._at_once.is_set())
            ):
                return start
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
        return len(actions)

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
        """Metrics for each puller's outcomes, once per pod and image; an Event for each
        failure."""
        live = {obj["metadata"].get("uid") for obj in self.pods.items()}
        events: list[Callable[[], bool]] = []
        for outcome in self._outcomes_reported.new(plan.outcomes, live):
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

    def _yield_events(self, plan: Plan) -> list[Callable[[], bool]]:
        """A log line, the metric and an Event for each puller deleted to make way for a
        workload pod starting on its node, once per pod."""
        live = {obj["metadata"].get("uid") for obj in self.pods.items()}
        self._reported_yields &= live
        events: list[Callable[[], bool]] = []
        for deletion in plan.deletions:
            if not deletion.yielded_to or deletion.uid in self._reported_yields:
                continue
            self._reported_yields.add(deletion.uid)
            images = self._puller_images(deletion)
            self.metrics.pull_yielded(images)
            log.info(
                "puller %s on %s yielded to pod %s starting on the node",
                deletion.name,
                deletion.node,
                deletion.yielded_to,
                extra={
                    "node": deletion.node,
                    "pod": deletion.name,
                    "workload": deletion.yielded_to,
                },
            )
            events.append(partial(self._event, self._yield_event(deletion, images, plan.now)))
        return events

    def _puller_images(self, deletion: PodDeletion) -> list[str]:
        """The images the deleted puller had still to pull (all of them when it is not cached)."""
        for obj in self.pods.items():
            if obj["metadata"].get("uid") == deletion.uid:
                pod = observe.managed_pod(obj)
                return list(pod.images) if pod is not None else []
        return []

    def _yield_event(
        self, deletion: PodDeletion, images: list[str], now: datetime
    ) -> dict[str, Any]:
        pulling = f" ({', '.join(images)})" if images else ""
        return puller_event(
            namespace=self.kube.pod_namespace,
            pod=deletion.name,
            pod_uid=deletion.uid,
            node=deletion.node,
            reason="PrefetchYielded",
            message=(
                f"prefetch{pulling} yielded to pod {deletion.yielded_to} starting on the node: "
                "its pull goes first; the images are pulled again once it started"
            ),
            now=format_time(now),
        )

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

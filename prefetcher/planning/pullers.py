"""Stage 3, pullers: what they pulled or failed to, backoff memory, and which to remove."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from prefetcher import observe, pods
from prefetcher.model import ManagedPod, PullOutcome, PullRecord
from prefetcher.planning.state import PlanState

STUCK_GRACE = 300.0  # seconds past a puller's deadline before it counts as stuck


def _seconds(pod: ManagedPod, finished: datetime | None) -> float | None:
    if pod.created is None or finished is None:
        return None
    return max(0.0, (finished - pod.created).total_seconds())


def read_pullers(state: PlanState) -> None:
    """Outcomes of pullers' images, which pullers still fly, and which to delete."""
    config = state.config
    for pod in state.pullers:
        if pod.node not in state.node_names:
            state.delete(pod, "node no longer exists")
            continue
        results = state.puller_results(pod)
        for image, result in results.items():
            if result.succeeded:
                _record_success(state, pod, image, result)
            else:
                _record_failure(state, pod, image, result)
        pending = tuple(i for i in pod.images if i not in results)
        if pending:
            _read_unfinished(state, pod, pending)
            _hold(state, pod, results)
            continue
        # Finished: keep it while it is the only guard of an image it pulled.
        failed = sorted({r.reason for r in results.values() if not r.succeeded})
        fitted = state.fits(pod.node)
        unguarded = [
            image
            for image, result in results.items()
            if result.succeeded
            and image in fitted
            and not (config.keeper_enabled and image in state.guarded(pod.node))
        ]
        if not unguarded:
            why = "pulled; the keeper holds the image" if not failed else "pull failed"
            state.delete(pod, f"{why}: {', '.join(failed)}" if failed else why)
        elif failed and not config.keeper_enabled:
            # Its failed containers would retry for ever; its pulled images are checked
            # again by a new puller (a no-op pull of a present image).
            state.delete(pod, f"pull failed: {', '.join(failed)}")
        else:
            _hold(state, pod, results)

    state.pulling = {
        (p.node, image) for p, pending in state.in_flight.values() for image in pending
    }
    for key in list(state.records):
        node, image = key
        if (
            node not in state.node_names
            or image not in state.fits(node)
            or state.is_present(node, image)
        ):
            del state.records[key]


def _record_failure(
    state: PlanState, pod: ManagedPod, image: str, result: observe.PullResult
) -> None:
    """Count a failed pull once per puller (by uid) in its (node, image) backoff record."""
    key = (pod.node, image)
    previous = state.records.get(key)
    if previous is not None and previous.pod_uid == pod.uid:
        return
    # The pod's own attempt number survives a restart of the prefetcher; the record not.
    attempts = max((previous.attempts if previous else 0) + 1, pod.attempt)
    state.records[key] = PullRecord(
        pod.node, image, attempts, state.now, result.reason, result.message, pod.uid
    )
    _outcome(state, pod, image, result, state.now)


def _record_success(
    state: PlanState, pod: ManagedPod, image: str, result: observe.PullResult
) -> None:
    state.records.pop((pod.node, image), None)
    _outcome(state, pod, image, result, result.finished_at)
    state.pulled_at[(pod.node, image)] = result.finished_at or pod.created or state.now


def _outcome(
    state: PlanState,
    pod: ManagedPod,
    image: str,
    result: observe.PullResult,
    end: datetime | None,
) -> None:
    state.outcomes.append(
        PullOutcome(
            pod.node,
            image,
            pod.name,
            pod.uid,
            result.succeeded,
            result.reason,
            result.message,
            _seconds(pod, end),
            state.size_of(image),
            result.kind,
        )
    )


def _hold(state: PlanState, pod: ManagedPod, results: Mapping[str, observe.PullResult]) -> None:
    """Note the images a puller that stays (for now) keeps from image GC."""
    if pod.deleting or pod.uid in state.deleted:
        return
    held = state.puller_held.setdefault(pod.node, set())
    held.update(image for image, result in results.items() if result.succeeded)


def _read_unfinished(state: PlanState, pod: ManagedPod, pending: tuple[str, ...]) -> None:
    """A puller with images still to pull: flying, stuck past its deadline, or unwanted."""
    if pod.deleting:
        state.in_flight[pod.uid or pod.name] = (pod, pending)  # the kubelet may still be pulling
        return
    now = state.now
    deadline = pod.active_deadline or pods.pull_deadline(
        sum(state.size_of(i) for i in pod.images), state.config
    )
    stuck_at = (pod.created or now) + timedelta(seconds=deadline + STUCK_GRACE)
    if now > stuck_at:
        age = int((now - pod.created).total_seconds()) if pod.created else 0
        stuck = observe.PullResult(
            succeeded=False,
            reason=observe.DEADLINE_REASON,
            message=f"puller still unfinished {age} s after creation",
            kind="deadline",
        )
        for image in pending:
            _record_failure(state, pod, image, stuck)
        state.delete(pod, "stuck past its deadline")
    elif not any(i in state.fits(pod.node) for i in pending):
        state.delete(pod, "image no longer wanted on this node")
    else:
        state.in_flight[pod.uid or pod.name] = (pod, pending)
        state.wake(stuck_at)

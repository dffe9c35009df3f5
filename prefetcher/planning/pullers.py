"""Stage 3, pullers: what they pulled or failed to, backoff memory, and which to remove."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import NamedTuple

from prefetcher import observe, pods, presence
from prefetcher.model import ManagedPod, PullKey, PullOutcome, PullRecord
from prefetcher.planning.images import DISK_PER_COMPRESSED_BYTE, registry_of
from prefetcher.planning.memo import EMPTY
from prefetcher.planning.reading import PullerReading
from prefetcher.planning.starting import Starting, starting_pods, yields_to
from prefetcher.planning.state import PlanState

STUCK_GRACE = 300.0  # seconds past a puller's deadline before it counts as stuck
# An image whose container started sooner after the previous one was already on the node.
MEASURE_MIN_SECONDS = 5.0


def _seconds(pod: ManagedPod, finished: datetime | None) -> float | None:
    if pod.created is None or finished is None:
        return None
    return max(0.0, (finished - pod.created).total_seconds())


class Finished(NamedTuple):
    """What a finished puller whose every image was pulled gives each pass: it cannot change
    while the pod object and its images' sizes stay the same (the incremental planner keeps
    it per puller instead of reading the puller again)."""

    pulled: frozenset[str]
    outcomes: tuple[PullOutcome, ...]
    pulled_at: Mapping[PullKey, datetime]
    # (registry, its pulls' bytes per second), see `_measure`
    samples: tuple[tuple[str, tuple[float, ...]], ...]
    node: str


def finished_puller(state: PlanState, pod: ManagedPod) -> Finished | None:
    """The outcomes, pull times and throughput samples of a puller whose images all pulled;
    None for any other puller."""
    results = state.puller_results(pod)
    if any(i not in results for i in pod.images) or not all(r.succeeded for r in results.values()):
        return None
    outcomes = []
    pulled_at = {}
    for image, result in results.items():
        outcomes.append(_success(state, pod, image, result))
        pulled_at[(pod.node, image)] = result.finished_at or pod.created or state.now
    by_registry: dict[str, list[float]] = {}
    for registry, rate in _measure(state, pod):
        by_registry.setdefault(registry, []).append(rate)
    samples = tuple((registry, tuple(rates)) for registry, rates in by_registry.items())
    pulled = observe.image_set(tuple(sorted(results)))  # shared by pullers of one batch
    return Finished(pulled, tuple(outcomes), pulled_at, samples, pod.node)


def pulled_so_far(state: PlanState, pod: ManagedPod) -> Finished | None:
    """The outcomes and pull times of the images a puller still pulling (or one with failed
    images) pulled, as `finished_puller` gives them for a finished one but without its
    throughput samples; None when it pulled none yet."""
    outcomes = []
    pulled_at = {}
    for image, result in state.puller_results(pod).items():
        if result.succeeded:
            outcomes.append(_success(state, pod, image, result))
            pulled_at[(pod.node, image)] = result.finished_at or pod.created or state.now
    if not outcomes:
        return None
    pulled = observe.image_set(tuple(sorted(image for _, image in pulled_at)))
    return Finished(pulled, tuple(outcomes), pulled_at, (), pod.node)


def read_pullers(state: PlanState) -> None:
    """Outcomes of pullers' images, which pullers still fly, and which to delete."""
    config = state.config
    starting = starting_pods(state)
    for pod in state.pullers:
        if pod.node not in state.node_names:
            state.delete(pod, "node no longer exists")
            continue
        reading = state.puller_reading(pod)
        finished = None
        if not reading.pending and not reading.failed:  # (else it has not pulled them all)
            finished = state.finished_puller(pod, finished_puller)
        if finished is not None:
            _record_finished(state, finished)
            pulled, failed = finished.pulled, []
        else:
            part = state.finished_puller(pod, pulled_so_far)
            if part is not None:
                _record_finished(state, part)
            for image, result in reading.failed:
                _record_failure(state, pod, image, result)
            pulled = part.pulled if part is not None else EMPTY
            if reading.pending:
                _read_unfinished(state, pod, reading, starting)
                _hold(state, pod, pulled)
                continue
            failed = sorted({r.reason for _, r in reading.failed})
        # Finished: keep it while it is the only guard of an image it pulled.
        # (the puller's own set while the node wants all of it and no keeper holds any: the
        # same object, its hash kept, every pass)
        fits = state.fits(pod.node)
        unguarded = pulled if pulled <= fits else pulled & fits
        if unguarded and config.keeper_enabled:
            guarded = state.guarded(pod.node)
            if guarded and not guarded.isdisjoint(unguarded):
                unguarded = unguarded - guarded
        if not unguarded:
            why = "pulled; the keeper holds the image" if not failed else "pull failed"
            state.delete(pod, f"{why}: {', '.join(failed)}" if failed else why)
        elif failed and not config.keeper_enabled:
            # Its failed containers would retry for ever; its pulled images are checked
            # again by a new puller (a no-op pull of a present image).
            state.delete(pod, f"pull failed: {', '.join(failed)}")
        else:
            _hold(state, pod, pulled)
            if unguarded and config.keeper_enabled and not pod.deleting:
                state.unguarded.setdefault(pod.node, []).append(frozenset(unguarded))

    for pod, reading in state.in_flight.values():
        state.pulling.add(pod.node, reading.pending_set)
    for key in list(state.records):
        node, image = key
        if (
            node not in state.node_names
            or image not in state.fits(node)
            or state.is_present(node, image)
        ):
            del state.records[key]


def _record_finished(state: PlanState, finished: Finished) -> None:
    """`_record_success` of each image of a finished puller, and its throughput samples."""
    records = state.records
    if records and not records.keys().isdisjoint(finished.pulled_at):
        for key in finished.pulled_at:
            records.pop(key, None)
    state.pulled_at.add(finished.node, finished.pulled_at)
    state.outcomes.append(finished.outcomes)
    for registry, rates in finished.samples:
        state.throughput_samples.setdefault(registry, []).append(rates)


def _measure(state: PlanState, pod: ManagedPod) -> list[tuple[str, float]]:
    """Each image a finished puller (every image pulled) pulled is one sample of the rate a
    pull from its registry gets (`pull_throughput`): its bytes sent (on-disk size ÷ the usual
    unpacking ratio) over the seconds of its own pull, from the previous container's start (the
    init container's end for the first) to its container's start. The puller's wait for its
    turn and its other images do not count; an image that took under MEASURE_MIN_SECONDS was
    already there."""
    if pod.created is None:
        return []
    inits = [c.finished_at for c in pod.containers if c.init]
    mark = max((f for f in inits if f is not None), default=pod.created)
    samples: list[tuple[str, float]] = []
    for container in pod.containers:
        if container.init:
            continue
        if container.started_at is None:
            return samples
        seconds = (container.started_at - mark).total_seconds()
        mark = container.started_at
        if container.image in pod.images and seconds >= MEASURE_MIN_SECONDS:
            registry = registry_of(container.image)[0]
            sent = state.size_of(container.image) / DISK_PER_COMPRESSED_BYTE
            samples.append((registry, sent / seconds))
    return samples


def _record_failure(
    state: PlanState, pod: ManagedPod, image: str, result: presence.PullResult
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
    state.outcomes.append((_outcome(state, pod, image, result, state.now),))


def _success(
    state: PlanState, pod: ManagedPod, image: str, result: presence.PullResult
) -> PullOutcome:
    return _outcome(state, pod, image, result, result.finished_at)


def _outcome(
    state: PlanState,
    pod: ManagedPod,
    image: str,
    result: presence.PullResult,
    end: datetime | None,
) -> PullOutcome:
    return PullOutcome(
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


def _hold(state: PlanState, pod: ManagedPod, pulled: Iterable[str]) -> None:
    """Note the images a puller that stays (for now) keeps from image GC."""
    if pod.deleting or pod.uid in state.deleted:
        return
    held = state.puller_held.get(pod.node)
    if held is None and isinstance(pulled, frozenset):
        state.puller_held[pod.node] = pulled  # shared until a second puller adds to it
    elif held is None or isinstance(held, frozenset):
        state.puller_held[pod.node] = {*(held or ()), *pulled}
    else:
        held.update(pulled)


def pull_clock_start(state: PlanState, pod: ManagedPod, reading: PullerReading) -> datetime:
    """When the puller's current image could start pulling: after the pod's creation, after
    its previous image was ready (the kubelet pulls a pod's images one after another), and
    after any workload pod starting on the node began (the kubelet pulls in arrival order, so
    time spent behind that pod's pulls is not this image's)."""
    if reading.clock_start is None:
        return state.now
    began = reading.clock_start
    for starting in state.starting_on(pod.node):
        if starting.since is not None and starting.since > began:
            began = starting.since
    return min(began, state.now)


def _read_unfinished(
    state: PlanState,
    pod: ManagedPod,
    reading: PullerReading,
    starting: Starting,
) -> None:
    """A puller with images still to pull: flying, stuck past its current image's deadline
    (counted from when that image could start, not from the pod's creation), unwanted, or
    in the way of a workload pod starting on its node."""
    if pod.deleting:
        state.in_flight[pod.uid or pod.name] = (pod, reading)  # the kubelet may still be pulling
        return
    now, pending = state.now, reading.pending
    current = pending[0]
    workload = yields_to(state, starting, pod, current)
    # The pods starting on the node push back this puller's deadline (`pull_clock_start`),
    # and the one it yields to decides when its images are planned again.
    here = state.starting_on(pod.node)
    if here:
        state.holding.update(s.pod for s in here)
    if workload:
        # Not a failure: no backoff; its images are planned again once the pod started.
        state.delete(pod, f"yielded to pod {workload} starting on the node", yielded_to=workload)
        for image in pending:
            state.waiting[(pod.node, image)] = f"yielded to pod {workload} starting on the node"
        return
    allowed = pods.pull_deadline(state.size_of(current), state.config)
    began = pull_clock_start(state, pod, reading)
    stuck_at = began + timedelta(seconds=allowed + STUCK_GRACE)
    if now > stuck_at:
        waited = int((now - began).total_seconds())
        stuck = presence.PullResult(
            succeeded=False,
            reason=presence.DEADLINE_REASON,
            message=(
                f"{current} still not pulled {waited} s after its pull could start "
                f"(allowed {allowed} s for {state.size_of(current)} bytes)"
            ),
            kind="deadline",
        )
        for image in pending:
            _record_failure(state, pod, image, stuck)
        state.delete(pod, "stuck past its deadline")
    elif reading.pending_set.isdisjoint(state.fits(pod.node)):
        state.delete(pod, "image no longer wanted on this node")
    else:
        state.in_flight[pod.uid or pod.name] = (pod, reading)
        state.wake(stuck_at)

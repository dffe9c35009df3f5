"""The webhook's Prometheus metrics, correct across every gunicorn worker of a pod.

gunicorn runs several worker processes; a scrape lands on one of them. With
`PROMETHEUS_MULTIPROC_DIR` set (the server launcher does it before anything imports
`prometheus_client`), every worker writes its values to files in that directory and any
worker's `/metrics` reads them all, so the figures are the pod's, not one worker's share.
The launcher marks dead workers so their gauges stop counting.

The metric objects live in one `Metrics` instance built by `create_app`; none are global.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prometheus_multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
PREFIX = "image_sync_webhook"

# Outcomes of POST /mutate.
OUTCOME_PATCHED = "patched"  # a JSONPatch was returned
OUTCOME_UNCHANGED = "unchanged"  # a Pod CREATE that needed no change
OUTCOME_SKIPPED = "skipped"  # not a Pod CREATE: allowed as is
OUTCOME_INVALID = "invalid"  # HTTP 400
OUTCOME_ERROR = "error"  # internal error, allowed unchanged
OUTCOMES = (OUTCOME_PATCHED, OUTCOME_UNCHANGED, OUTCOME_SKIPPED, OUTCOME_INVALID, OUTCOME_ERROR)

# Sub-millisecond buckets: the budget is a few milliseconds, so that is where detail matters.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


class Metrics:
    """Counters and histograms of one process; exposition covers all workers when multiprocess."""

    def __init__(self) -> None:
        self.multiprocess = multiprocess_dir() is not None
        # In multiprocess mode values go to files and the scrape builds a fresh registry from
        # them; registering the objects anywhere would count them twice.
        self._registry: CollectorRegistry | None = (
            None if self.multiprocess else CollectorRegistry()
        )
        registry = self._registry
        self.requests = Counter(
            f"{PREFIX}_requests",
            "AdmissionReviews answered, by outcome (patched, unchanged, skipped, invalid, error).",
            ["outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            f"{PREFIX}_request_duration_seconds",
            "Time to answer POST /mutate, from body read to response built.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.patches = Counter(
            f"{PREFIX}_patches",
            "Pods that got a JSONPatch.",
            registry=registry,
        )
        self.containers_rewritten = Counter(
            f"{PREFIX}_containers_rewritten",
            "Containers whose imagePullPolicy was set to IfNotPresent.",
            registry=registry,
        )
        self.images_seen = Counter(
            f"{PREFIX}_images_seen",
            "Managed images seen in admitted pods (one per image per pod) and queued for learning.",
            registry=registry,
        )
        self.images_learned = Counter(
            f"{PREFIX}_images_learned",
            "CachedImage objects written (created or updated) by the learner.",
            ["action"],
            registry=registry,
        )
        self.flush_errors = Counter(
            f"{PREFIX}_learn_flush_errors",
            "CachedImage writes that failed and were retried later or given up, by reason.",
            ["reason"],
            registry=registry,
        )
        self.learn_errors = Counter(
            f"{PREFIX}_learn_errors",
            "Admitted pods the learner could not read (the pod was still answered and patched).",
            registry=registry,
        )
        self.conflicts = Counter(
            f"{PREFIX}_learn_conflicts",
            "CachedImage writes that met a newer resourceVersion (another writer) and were redone.",
            registry=registry,
        )
        self.dropped = Counter(
            f"{PREFIX}_learn_dropped",
            "Image sightings dropped because the learner's buffer was full.",
            registry=registry,
        )
        self.dropped_profiles = Counter(
            f"{PREFIX}_learn_profiles_dropped",
            "Placement profiles not kept (over learnMaxPendingBytes, or one profile over 64 KiB); the use still counts.",
            registry=registry,
        )
        self.pending = Gauge(
            f"{PREFIX}_learn_pending",
            "Distinct images waiting to be written, summed over live workers.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.pod_guard = Counter(
            f"{PREFIX}_pod_guard_reviews",
            "Pods the admission guard of the pod namespace reviewed (POST /validate-pods), "
            "by verdict: allowed, refused (not shaped like a puller or keeper), invalid (400).",
            ["verdict"],
            registry=registry,
        )
        # Bound once: `labels()` takes a lock and builds a key on every call.
        self.by_outcome = {outcome: self.requests.labels(outcome=outcome) for outcome in OUTCOMES}

    def exposition(self) -> tuple[bytes, str]:
        """The text format for GET /metrics and its content type."""
        if self._registry is not None:
            return generate_latest(self._registry), CONTENT_TYPE_LATEST
        registry = CollectorRegistry()
        prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """Called by the arbiter when a worker exits, so `livesum` gauges drop its share."""
    if multiprocess_dir() is not None:
        prometheus_multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]

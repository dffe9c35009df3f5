"""The prefetcher's Prometheus metrics, on a registry of its own (no global state).

Names are part of the operations contract (docs/prefetcher-operations.md lists them).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from imagesync.kubeclient import KubeError
from imagesync.reference import InvalidReference, parse_reference
from prefetcher.learnlimits import LEFT_OUT_REASONS, LearnedSelection
from prefetcher.model import Plan, PullOutcome

PREFIX = "image_sync_prefetcher"
# Pulls range from a 5 MB busybox to a 20 GB NGC image over a slow link.
PULL_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
SWEEP_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """Every metric the prefetcher exports; one instance per process (or per test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.coverage = Gauge(
            f"{PREFIX}_coverage_ratio",
            "Present / wanted (node, image) pairs after the last pass (1 when nothing is wanted).",
            registry=r,
        )
        self.pairs = Gauge(
            f"{PREFIX}_pairs",
            "(node, image) pairs by state after the last pass.",
            ["state"],
            registry=r,
        )
        self.nodes = Gauge(f"{PREFIX}_nodes", "Nodes seen.", registry=r)
        self.images = Gauge(f"{PREFIX}_images", "CachedImages seen.", registry=r)
        self.learned_left_out = Gauge(
            f"{PREFIX}_learned_images_left_out",
            "Learned images not prefetched: unconfirmed (no stored pod used them yet), or over "
            "maxLearnedImagesPerNamespace (namespace_limit) or maxLearnedImages (total_limit).",
            ["reason"],
            registry=r,
        )
        self.pulls_started = Counter(
            f"{PREFIX}_pulls_started",
            "Image pulls started (one puller pod pulls up to pullBatchSize images), by registry.",
            ["registry", "urgent"],
            registry=r,
        )
        self.pulls_succeeded = Counter(
            f"{PREFIX}_pulls_succeeded",
            "Pulls that left the image on the node, by registry.",
            ["registry"],
            registry=r,
        )
        self.pulls_failed = Counter(
            f"{PREFIX}_pulls_failed",
            "Pulls that failed, by registry and the kubelet's reason.",
            ["registry", "reason"],
            registry=r,
        )
        self.pulls_yielded = Counter(
            f"{PREFIX}_pulls_yielded",
            "Pullers deleted with images still to pull, making way for a workload pod starting "
            "on their node that missed an image (not failures: pulled again later), by registry.",
            ["registry"],
            registry=r,
        )
        self.bytes_pulled = Counter(
            f"{PREFIX}_pulled_bytes",
            "Estimated on-disk bytes of images pulled, by registry.",
            ["registry"],
            registry=r,
        )
        self.image_failed_nodes = Gauge(
            f"{PREFIX}_image_failed_nodes",
            "Nodes where the image's last pull failed, after the last pass (only failing images).",
            ["image"],
            registry=r,
        )
        self.node_warming_since = Gauge(
            f"{PREFIX}_node_warming_since_timestamp_seconds",
            "When a node that joined or turned Ready while running began waiting for its wanted "
            "images; present only until they are all there.",
            ["node"],
            registry=r,
        )
        self.pull_seconds = Histogram(
            f"{PREFIX}_pull_seconds",
            "Puller pod creation to image ready.",
            buckets=PULL_BUCKETS,
            registry=r,
        )
        self.node_warm_seconds = Histogram(
            f"{PREFIX}_node_warm_seconds",
            "A node joining or turning Ready to all its wanted images present.",
            buckets=PULL_BUCKETS,
            registry=r,
        )
        self.sweep_seconds = Histogram(
            f"{PREFIX}_pass_seconds",
            "Duration of one pass (snapshot, plan, execute), by trigger.",
            ["trigger"],
            buckets=SWEEP_BUCKETS,
            registry=r,
        )
        self.plan_seconds = Histogram(
            f"{PREFIX}_plan_seconds",
            "Duration of the pure planning step alone.",
            buckets=SWEEP_BUCKETS,
            registry=r,
        )
        self.rewrite_undone = Gauge(
            f"{PREFIX}_pull_policy_rewrite_undone",
            "1 once a stored pod carries another pull policy than the webhook set (an admission "
            "plugin such as AlwaysPullImages undid it; the report's runtime.pullPolicyRewriteUndone "
            "names the pod).",
            registry=r,
        )
        self.bad_objects = Gauge(
            f"{PREFIX}_bad_objects",
            "Objects the prefetcher cannot read and skips (see the report's runtime.badObjects).",
            ["kind"],
            registry=r,
        )
        self.pass_failures = Counter(
            f"{PREFIX}_pass_failures",
            "Passes that ended early: api-errors (a chunk of writes all failed) or error (a bug).",
            ["reason"],
            registry=r,
        )
        self.last_pass_success = Gauge(
            f"{PREFIX}_last_successful_pass_timestamp_seconds",
            "When the last pass that carried out its whole plan finished (leader only).",
            registry=r,
        )
        self.last_sweep = Gauge(
            f"{PREFIX}_last_sweep_timestamp_seconds",
            "When the last full resync sweep finished.",
            registry=r,
        )
        self.actions = Counter(
            f"{PREFIX}_actions", "Writes carried out, by kind.", ["kind"], registry=r
        )
        self.api_requests = Counter(
            f"{PREFIX}_api_requests",
            "Requests to the API server (informers' list and watch included), by verb and resource.",
            ["verb", "resource"],
            registry=r,
        )
        self.api_errors = Counter(
            f"{PREFIX}_api_errors",
            "Failed requests to the API server, by verb and HTTP code (0: not reached).",
            ["verb", "code"],
            registry=r,
        )
        self.leader = Gauge(f"{PREFIX}_leader", "1 while this replica holds the lease.", registry=r)
        self.source_images = Gauge(
            f"{PREFIX}_source_images",
            "Images a source (observed, catalog) wants, by source and prefix (observed: all).",
            ["source", "prefix"],
            registry=r,
        )
        self.source_errors = Counter(
            f"{PREFIX}_source_errors",
            "Failed reads of a source, by source, prefix and kind (unauthorized, not-found, "
            "rate-limited, unreachable, tls, invalid, error).",
            ["source", "prefix", "kind"],
            registry=r,
        )
        self.source_last_success = Gauge(
            f"{PREFIX}_source_last_success_timestamp_seconds",
            "When a source was last read in full, by source and prefix.",
            ["source", "prefix"],
            registry=r,
        )
        self.nodes_at_image_list_cap = Gauge(
            f"{PREFIX}_nodes_at_image_list_cap",
            "Nodes whose status.images is at the kubelet's default cap of 50 (raise "
            "nodeStatusMaxImages so the observed source sees every image).",
            registry=r,
        )
        self._failing_images: set[str] = set()
        self._warming_nodes: set[str] = set()

    def pull_started(self, images: Iterable[str], urgent: bool) -> None:
        """One puller pod created for `images`."""
        for image in images:
            self.pulls_started.labels(registry_of(image), str(urgent).lower()).inc()

    def pull_yielded(self, images: Iterable[str]) -> None:
        """One puller deleted for a workload pod starting on its node."""
        for registry in sorted({registry_of(image) for image in images}):
            self.pulls_yielded.labels(registry).inc()

    def pull_finished(self, outcome: PullOutcome) -> None:
        """One image of a finished puller, counted once."""
        registry = registry_of(outcome.image)
        if outcome.succeeded:
            self.pulls_succeeded.labels(registry).inc()
            self.bytes_pulled.labels(registry).inc(outcome.size)
            if outcome.seconds is not None:
                self.pull_seconds.observe(outcome.seconds)
        else:
            self.pulls_failed.labels(registry, outcome.reason or "Unknown").inc()

    def observe_warming(self, since: Mapping[str, float]) -> None:
        """The nodes still waiting for wanted images (node → epoch seconds it began)."""
        self._warming_nodes = _replace_series(self.node_warming_since, self._warming_nodes, since)

    def observe_sources(self, observed: int, at_cap: int) -> None:
        """The observed source's gauges after a pass (the catalog reader sets its own)."""
        self.source_images.labels("observed", "").set(observed)
        self.nodes_at_image_list_cap.set(at_cap)

    def api_call(self, verb: str, resource: str, error: KubeError | None) -> None:
        """`Kube`'s call hook."""
        self.api_requests.labels(verb, resource).inc()
        if error is not None:
            self.api_errors.labels(verb, str(error.status)).inc()

    def api_error(self, verb: str, error: KubeError) -> None:
        """The informers' error hook (their requests are counted through `Kube.count`)."""
        self.api_errors.labels(verb, str(error.status)).inc()

    def writes(self) -> dict[tuple[str, str], float]:
        """(verb, resource) → requests so far, for the writing verbs."""
        out: dict[tuple[str, str], float] = {}
        for metric in self.api_requests.collect():
            for sample in metric.samples:
                verb = sample.labels.get("verb", "")
                if sample.name.endswith("_total") and verb in (
                    "create",
                    "update",
                    "patch",
                    "delete",
                ):
                    out[(verb, sample.labels["resource"])] = sample.value
        return out

    def observe_learned(self, selection: LearnedSelection) -> None:
        for reason in LEFT_OUT_REASONS:
            self.learned_left_out.labels(reason).set(selection.count(reason))

    def observe_plan(self, plan: Plan) -> None:
        """Gauges from a plan's summary."""
        summary = plan.summary
        if summary is None:
            return
        self.coverage.set(summary.coverage)
        self.nodes.set(summary.nodes)
        self.images.set(summary.images)
        for state, value in (
            ("present", summary.present_pairs),
            ("pulling", summary.pulling_pairs),
            ("failed", summary.failed_pairs),
            ("missing", summary.missing_pairs),
            ("ineligible", summary.ineligible_pairs),
        ):
            self.pairs.labels(state).set(value)
        failing = {i.image: float(i.nodes_failed) for i in plan.images if i.nodes_failed}
        self._failing_images = _replace_series(
            self.image_failed_nodes, self._failing_images, failing
        )


@functools.lru_cache(maxsize=4096)
def registry_of(image: str) -> str:
    """The registry (host[:port]) of a normalized reference: the `registry` label."""
    try:
        return parse_reference(image).domain
    except InvalidReference:
        return "invalid"


def _replace_series(gauge: Gauge, shown: set[str], values: Mapping[str, float]) -> set[str]:
    """Set one labelled series per key of `values` and drop the ones no longer there."""
    for key in shown - values.keys():
        gauge.remove(key)
    for key, value in values.items():
        gauge.labels(key).set(value)
    return set(values)

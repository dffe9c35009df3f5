"""The prefetcher's metrics: registry labels, failing images and waiting nodes come and go."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from prefetcher.metrics import Metrics, registry_of
from prefetcher.model import PullOutcome
from tests.prefetcher.test_core_fixtures import APP, BUSYBOX, CUDA, MISSING, image, world

P = "image_sync_prefetcher"


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def test_registry_label_is_the_registry_host_and_port() -> None:
    assert registry_of(CUDA) == "nvcr.io"
    assert registry_of(BUSYBOX) == "docker.io"
    assert registry_of("harbor.example.internal:5000/team/app:1") == "harbor.example.internal:5000"
    assert registry_of("Not A Reference") == "invalid"


def test_pulls_are_counted_per_registry() -> None:
    metrics = Metrics()
    metrics.pull_started([APP, CUDA, CUDA], urgent=True)
    metrics.pull_started([BUSYBOX], urgent=False)
    ok = PullOutcome("cpu-1", CUDA, "p", "u1", succeeded=True, seconds=12.0, size=300)
    bad = PullOutcome("cpu-1", APP, "p", "u1", succeeded=False, reason="ErrImagePull")
    for outcome in (ok, ok, bad):
        metrics.pull_finished(outcome)
    started = f"{P}_pulls_started_total"
    assert value(metrics, started, registry="nvcr.io", urgent="true") == 2
    assert value(metrics, started, registry="harbor.example.internal", urgent="true") == 1
    assert value(metrics, started, registry="docker.io", urgent="false") == 1
    assert value(metrics, f"{P}_pulls_succeeded_total", registry="nvcr.io") == 2
    assert value(metrics, f"{P}_pulled_bytes_total", registry="nvcr.io") == 600
    failed = f"{P}_pulls_failed_total"
    assert value(metrics, failed, registry="harbor.example.internal", reason="ErrImagePull") == 1
    assert value(metrics, f"{P}_pull_seconds_count") == 2


def test_failing_images_are_shown_while_they_fail() -> None:
    w = world()
    w.images.append(image(MISSING, uses=40))
    w.fail[MISSING] = ("ErrImagePull", "not found")
    metrics = Metrics()
    for _ in range(10):
        metrics.observe_plan(w.step())
    failing = {
        labels: v for (name, labels), v in samples(metrics).items() if name.endswith("failed_nodes")
    }
    assert failing == {frozenset({("image", MISSING)}): 6.0}, "failing on all six nodes"
    assert value(metrics, f"{P}_pairs", state="failed") == 6

    w.images = [i for i in w.images if i.image != MISSING]
    metrics.observe_plan(w.step())
    assert not [k for k in samples(metrics) if k[0].endswith("failed_nodes")]


def test_waiting_nodes_are_replaced_each_pass() -> None:
    metrics = Metrics()
    metrics.observe_warming({"cpu-5": 100.0, "gpu-3": 160.0})
    name = f"{P}_node_warming_since_timestamp_seconds"
    assert value(metrics, name, node="cpu-5") == 100.0
    assert value(metrics, name, node="gpu-3") == 160.0
    metrics.observe_warming({"gpu-3": 160.0})
    assert value(metrics, name, node="cpu-5") is None
    assert value(metrics, name, node="gpu-3") == 160.0
    metrics.observe_warming({})
    assert not [k for k in samples(metrics) if k[0] == name]

"""The recorder's buffer: sightings merged per image, bounded, and flushed by its own thread."""

from __future__ import annotations

from imagesync.cachedimage import object_name
from tests.webhook.recorder_store import (
    IMAGE,
    NOW,
    MemoryStore,
    profile,
    recorder,
    stored,
    usage,
)
from webhook.learning import Sighting
from webhook.metrics import Metrics
from webhook.recorder import Recorder


def test_sightings_are_deduplicated_and_written_once() -> None:
    store = MemoryStore()
    learner = recorder(store)
    for _ in range(5):
        learner.record(Sighting((IMAGE,), profile()))
    learner.record(Sighting((IMAGE,), profile(namespace="research")))
    assert learner.pending == 1
    result = learner.flush()
    assert (result.written, result.failed) == (1, 0)
    obj = stored(store)
    assert obj["spec"]["image"] == IMAGE and obj["spec"]["source"] == "Learned"
    assert sorted(p["namespace"] for p in obj["spec"]["profiles"]) == ["research", "training"]
    assert all(p["lastSeen"] == "2026-11-22T10:00:00Z" for p in obj["spec"]["profiles"])
    assert usage(obj) == {
        "lastSeen": "2026-11-22T10:00:00Z",
        "useCount": 6,
        "dailyUses": {"2026-11-22": 6},
    }
    assert store.calls.count("create") == 1

    learner.record(Sighting((IMAGE,), profile()))
    learner.flush()
    assert stored(store)["status"]["useCount"] == 7
    assert len(stored(store)["spec"]["profiles"]) == 2


def test_buffer_is_bounded_and_drops_are_counted() -> None:
    store = MemoryStore()
    learner = recorder(store, max_pending=3)
    for index in range(10):
        learner.record(Sighting((f"nvcr.io/nvidia/img{index}:1",), profile()))
    learner.record(Sighting(("nvcr.io/nvidia/img0:1",), profile()))  # known image: still counted
    assert learner.pending == 3
    assert learner._metrics.dropped._value.get() == 7
    learner.flush()
    assert len(store.objects) == 3
    assert stored(store, "nvcr.io/nvidia/img0:1")["status"]["useCount"] == 2


def test_close_flushes_and_stops_the_thread() -> None:
    store = MemoryStore()
    learner = Recorder(store, Metrics(), flush_interval=3600, max_pending=10, clock=lambda: NOW)
    learner.record(Sighting((IMAGE,), profile()))
    assert learner._thread is not None and learner._thread.is_alive()
    result = learner.close()
    assert result.written == 1
    assert not learner._thread.is_alive()


def test_background_thread_writes_without_an_explicit_flush() -> None:
    """The flusher runs on its own; only the outcome is checked, never how long it took."""
    import time

    store = MemoryStore()
    learner = Recorder(store, Metrics(), flush_interval=0.05, max_pending=10, clock=lambda: NOW)
    learner.record(Sighting((IMAGE,), profile()))
    deadline = time.monotonic() + 60
    while object_name(IMAGE) not in store.objects or "status" not in stored(store):
        assert time.monotonic() < deadline, "the flusher never wrote"
        time.sleep(0.01)
    assert stored(store)["status"]["useCount"] == 1
    learner.close()
    assert learner.pending == 0

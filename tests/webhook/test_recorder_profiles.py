"""The recorder's placement profiles: bounded in count and bytes, each with the time it was last seen."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from imagesync.cachedimage import PlacementProfile
from tests.webhook.recorder_store import (
    IMAGE,
    NOW,
    MemoryStore,
    Ticks,
    profile,
    recorder,
    stored,
)
from webhook.learning import Sighting
from webhook.metrics import Metrics
from webhook.recorder import Recorder


def test_profiles_per_buffered_image_are_bounded() -> None:
    from webhook.pending import MAX_PENDING_PROFILES

    store = MemoryStore()
    learner = recorder(store)
    for index in range(MAX_PENDING_PROFILES + 50):
        learner.record(Sighting((IMAGE,), profile(namespace=f"ns-{index}")))
    assert len(learner._pending[IMAGE].profiles) == MAX_PENDING_PROFILES
    learner.flush()
    assert stored(store)["status"]["useCount"] == MAX_PENDING_PROFILES + 50
    assert len(stored(store)["spec"]["profiles"]) == 16


def test_each_profile_keeps_the_time_it_was_last_seen() -> None:
    """Profiles are stamped at flush time with when each was last recorded, not when flushed."""
    store = MemoryStore()
    now = [NOW]
    learner = Recorder(store, Metrics(), flush_interval=3600, max_pending=10, clock=lambda: now[0])
    learner.record(Sighting((IMAGE,), profile()))
    learner.record(Sighting((IMAGE,), profile(namespace="research")))
    now[0] = datetime(2026, 11, 22, 10, 5, 0, tzinfo=UTC)
    learner.record(Sighting((IMAGE,), profile()))
    learner.flush()
    seen = {p["namespace"]: p["lastSeen"] for p in stored(store)["spec"]["profiles"]}
    assert seen == {"training": "2026-11-22T10:05:00Z", "research": "2026-11-22T10:00:00Z"}
    assert stored(store)["status"]["lastSeen"] == "2026-11-22T10:05:00Z"


def test_a_requeued_image_keeps_the_newest_time_of_each_profile() -> None:
    store = MemoryStore()
    now = [NOW]
    ticks = Ticks()
    learner = Recorder(
        store,
        Metrics(),
        flush_interval=3600,
        max_pending=10,
        clock=lambda: now[0],
        monotonic=ticks,
    )
    learner.record(Sighting((IMAGE,), profile()))
    store.down = True
    learner.flush()  # fails: the entry is kept (in doubt) for a later flush
    now[0] = datetime(2026, 11, 22, 11, 0, 0, tzinfo=UTC)
    learner.record(Sighting((IMAGE,), profile()))
    store.down = False
    ticks.pass_backoff()
    learner.flush()
    [written] = stored(store)["spec"]["profiles"]
    assert written["lastSeen"] == "2026-11-22T11:00:00Z"
    assert stored(store)["status"]["useCount"] == 2


def test_a_profile_nested_too_deep_for_orjson_is_still_recorded() -> None:
    deep: dict[str, Any] = {}
    for _ in range(300):
        deep = {"matchExpressions": [deep]}
    odd = profile()
    odd["requiredNodeAffinity"] = [deep]
    learner = recorder(MemoryStore())
    learner.record(Sighting((IMAGE,), odd))
    learner.record(Sighting((IMAGE,), odd))
    assert learner.pending == 1
    assert len(learner._pending[IMAGE].profiles) == 1


def test_the_real_clock_stamps_in_kubernetes_format() -> None:
    from webhook.recorder import utc_now

    learner = Recorder(MemoryStore(), Metrics(), flush_interval=3600, max_pending=10)
    before = utc_now().replace(microsecond=0)
    stamp = learner._timestamp()
    after = utc_now()
    assert before <= datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) <= after


def huge_profile(namespace: str, tolerations: int) -> PlacementProfile:
    bulky = profile(namespace)
    bulky["tolerations"] = [
        {"key": f"example.com/taint-{index:06d}", "operator": "Exists"}
        for index in range(tolerations)
    ]
    return bulky


def test_profiles_are_bounded_in_bytes_and_uses_still_count() -> None:
    store = MemoryStore()
    learner = Recorder(
        store,
        Metrics(),
        flush_interval=3600,
        max_pending=100,
        max_pending_bytes=64 * 1024,
        clock=lambda: NOW,
    )
    # Each profile about 25 KiB of JSON: two fit the 64 KiB budget, the rest do not.
    for index in range(64):
        learner.record(Sighting((IMAGE,), huge_profile(f"ns-{index}", 500)))
    assert learner.pending_bytes <= 64 * 1024
    assert learner._metrics.dropped_profiles._value.get() == 62
    learner.flush()
    assert learner.pending_bytes == 0
    assert stored(store)["status"]["useCount"] == 64
    assert len(stored(store)["spec"]["profiles"]) == 2


def test_a_single_oversized_profile_is_never_held() -> None:
    store = MemoryStore()
    learner = recorder(store)
    # About 1.5 MB of tolerations, as a forged review can send.
    learner.record(Sighting((IMAGE,), huge_profile("training", 30_000)))
    assert (learner.pending, learner.pending_bytes) == (0, 0)
    assert learner._metrics.dropped_profiles._value.get() == 1
    assert learner._metrics.dropped._value.get() == 1
    learner.flush()
    assert store.objects == {}  # without a profile it would be wanted on every node

"""The learner's buffer and write rules, against an in-memory store with API-server semantics.

The same rules run against the simulator's API server in test_learning.py; here the store
can inject a conflict between a read and a write exactly where a concurrent writer would.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from imagesync.cachedimage import PlacementProfile, object_name
from imagesync.kubeclient import KubeError
from webhook.learning import Sighting
from webhook.metrics import Metrics
from webhook.recorder import Recorder

NOW = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
IMAGE = "nvcr.io/nvidia/pytorch:24.08-py3"


def profile(namespace: str = "training", gpu: bool = True) -> PlacementProfile:
    return PlacementProfile(
        nodeSelector={"nvidia.com/gpu.present": "true"} if gpu else {},
        requiredNodeAffinity=[],
        tolerations=[],
        gpu=gpu,
        namespace=namespace,
        ownerKind="Job",
    )


class MemoryStore:
    """Objects with resourceVersions; a stale write is a 409, as on a real API server."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.lock = threading.Lock()
        self.down = False
        self.before_write: Callable[[], None] | None = None
        self.calls: list[str] = []

    def _check(self) -> None:
        if self.down:
            raise KubeError("unreachable: connection refused", status=0)

    def _bump(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(obj)

    def get(self, name: str) -> dict[str, Any] | None:
        self._check()
        self.calls.append("get")
        with self.lock:
            obj = self.objects.get(name)
            return copy.deepcopy(obj) if obj else None

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        self._check()
        self.calls.append("create")
        with self.lock:
            name = body["metadata"]["name"]
            if name in self.objects:
                raise KubeError("AlreadyExists", status=409, reason="AlreadyExists")
            obj = copy.deepcopy(body)
            obj.pop("status", None)
            self.objects[name] = obj
            return self._bump(obj)

    def _write(self, body: dict[str, Any], part: str) -> dict[str, Any]:
        self._check()
        self.calls.append(f"replace_{part}")
        if self.before_write is not None:
            hook, self.before_write = self.before_write, None
            hook()
        with self.lock:
            current = self.objects[body["metadata"]["name"]]
            if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                raise KubeError("Conflict", status=409, reason="Conflict")
            current[part] = copy.deepcopy(body.get(part) or {})
            return self._bump(current)

    def replace(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._write(body, "spec")

    def replace_status(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._write(body, "status")


class Ticks:
    """A monotonic clock the test moves: per-image backoff without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def pass_backoff(self) -> None:
        self.now += 3600


def recorder(store: MemoryStore, max_pending: int = 100, ticks: Ticks | None = None) -> Recorder:
    return Recorder(
        store,
        Metrics(),
        flush_interval=3600,
        max_pending=max_pending,
        clock=lambda: NOW,
        monotonic=ticks or Ticks(),
    )


def usage(obj: dict[str, Any]) -> dict[str, Any]:
    """The status without the learners' write stamps."""
    return {k: v for k, v in obj["status"].items() if k != "learnerWrites"}


def stored(store: MemoryStore, image: str = IMAGE) -> dict[str, Any]:
    return store.objects[object_name(image)]


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


def test_declared_spec_is_never_overwritten() -> None:
    store = MemoryStore()
    declared = {
        "apiVersion": "image-sync.io/v1alpha1",
        "kind": "CachedImage",
        "metadata": {"name": object_name(IMAGE)},
        "spec": {"image": IMAGE, "source": "Declared", "nodeSelector": {"pool": "gpu"}},
    }
    store.create(declared)
    learner = recorder(store)
    learner.record(Sighting((IMAGE,), profile()))
    learner.flush()
    assert stored(store)["spec"] == declared["spec"]
    assert stored(store)["status"]["useCount"] == 1
    assert "replace_spec" not in store.calls


def test_conflict_between_read_and_write_is_retried_without_losing_counts() -> None:
    store = MemoryStore()
    first, second = recorder(store), recorder(store)
    first.record(Sighting((IMAGE,), profile()))
    first.flush()

    second.record(Sighting((IMAGE,), profile(namespace="other")))
    second.record(Sighting((IMAGE,), profile(namespace="other")))

    def concurrent_writer() -> None:  # `first` writes while `second` holds a stale copy
        first.record(Sighting((IMAGE,), profile()))
        first.flush()

    store.before_write = concurrent_writer
    assert second.flush().written == 1
    obj = stored(store)
    assert obj["status"]["useCount"] == 4
    assert sorted(p["namespace"] for p in obj["spec"]["profiles"]) == ["other", "training"]


def test_create_race_turns_into_update() -> None:
    store = MemoryStore()
    learner = recorder(store)
    learner.record(Sighting((IMAGE,), profile()))
    original_get = store.get

    def get_then_someone_creates(name: str) -> dict[str, Any] | None:
        store.get = original_get  # type: ignore[method-assign]
        other = recorder(store)
        other.record(Sighting((IMAGE,), profile(namespace="other")))
        other.flush()
        return None  # we saw "not found" just before the other writer created it

    store.get = get_then_someone_creates  # type: ignore[method-assign]
    assert learner.flush().written == 1
    assert stored(store)["status"]["useCount"] == 2


def test_api_down_is_counted_and_retried_without_losing_or_doubling_uses() -> None:
    store = MemoryStore()
    ticks = Ticks()
    learner = recorder(store, ticks=ticks)
    images = [f"nvcr.io/nvidia/img{index}:1" for index in range(5)]
    learner.record(Sighting(tuple(images), profile()))
    store.down = True
    result = learner.flush()
    # Three images in a row could not reach it: the rest waits, without a try. Nothing was
    # sent (the reads failed), so every use goes back into the buffer.
    assert (result.written, result.failed, result.requeued, result.aborted) == (0, 3, 5, True)
    assert "unreachable" in result.last_error
    errors = learner._metrics.flush_errors.labels(reason="unreachable")._value.get()
    assert errors == 3
    learner.record(Sighting((images[0],), profile()))  # recording still works while it is down
    store.down = False
    ticks.pass_backoff()
    assert learner.flush().written == 5
    assert [stored(store, image)["status"]["useCount"] for image in images] == [2, 1, 1, 1, 1]
    assert learner.pending == 0


@pytest.mark.parametrize("status", [400, 422])
def test_refused_objects_are_dropped_not_retried_forever(status: int) -> None:
    store = MemoryStore()
    learner = recorder(store)
    learner.record(Sighting((IMAGE,), profile()))

    def refuse(body: dict[str, Any]) -> dict[str, Any]:
        raise KubeError("Invalid", status=status)

    store.create = refuse  # type: ignore[method-assign]
    assert learner.flush().failed == 1
    assert learner.pending == 0


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


class FlakyStore(MemoryStore):
    """A MemoryStore whose status writes can land and then lose their answer, and whose
    calls for chosen objects always fail."""

    def __init__(self) -> None:
        super().__init__()
        self.lose_answers: list[KubeError] = []  # next status writes: applied, then raise
        self.drop_writes: list[KubeError] = []  # next status writes: not applied, raise
        self.broken: dict[str, Exception] = {}  # object name → error on every call

    def get(self, name: str) -> dict[str, Any] | None:
        if name in self.broken:
            raise self.broken[name]
        return super().get(name)

    def replace_status(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.drop_writes:
            raise self.drop_writes.pop(0)
        written = super().replace_status(body)
        if self.lose_answers:
            raise self.lose_answers.pop(0)
        return written


@pytest.mark.parametrize(
    "lost",
    [
        KubeError("unreachable: read timed out", status=0),
        KubeError("the server was unable to return a response in time", status=504),
    ],
)
def test_a_status_write_that_landed_but_lost_its_answer_is_not_applied_twice(
    lost: KubeError,
) -> None:
    store = FlakyStore()
    ticks = Ticks()
    learner = recorder(store, ticks=ticks)
    for _ in range(3):
        learner.record(Sighting((IMAGE,), profile()))
    store.lose_answers.append(lost)
    assert learner.flush().failed == 1
    assert stored(store)["status"]["useCount"] == 3  # it landed
    learner.record(Sighting((IMAGE,), profile()))
    ticks.pass_backoff()
    assert learner.flush().written == 1
    assert stored(store)["status"]["useCount"] == 4
    ticks.pass_backoff()
    learner.flush()
    assert stored(store)["status"]["useCount"] == 4


def test_a_status_write_that_did_not_land_is_sent_again() -> None:
    store = FlakyStore()
    ticks = Ticks()
    learner = recorder(store, ticks=ticks)
    for _ in range(3):
        learner.record(Sighting((IMAGE,), profile()))
    store.drop_writes += [KubeError("unreachable: read timed out", status=0)] * 2
    learner.flush()
    ticks.pass_backoff()
    learner.record(Sighting((IMAGE,), profile()))
    learner.flush()  # lost again: two writes in doubt now
    assert stored(store).get("status") in (None, {})
    ticks.pass_backoff()
    assert learner.flush().written == 1
    assert stored(store)["status"]["useCount"] == 4
    assert stored(store)["status"]["learnerWrites"][learner.writer_id]["sequence"] == 3


@pytest.mark.parametrize(
    "error",
    [
        KubeError("Internal error: etcdserver: request is too large", status=500),
        RuntimeError("bug"),
    ],
)
def test_a_persistent_error_on_one_image_does_not_hold_back_the_others(error: Exception) -> None:
    store = FlakyStore()
    ticks = Ticks()
    learner = recorder(store, ticks=ticks)
    bad, good = "nvcr.io/nvidia/bad:1", [f"nvcr.io/nvidia/good{index}:1" for index in range(4)]
    store.broken[object_name(bad)] = error
    for _ in range(3):
        learner.record(Sighting((bad, *good), profile()))
        result = learner.flush()
        assert result.failed <= 1 and not result.aborted
        ticks.pass_backoff()
    assert [stored(store, image)["status"]["useCount"] for image in good] == [3, 3, 3, 3]
    assert object_name(bad) not in store.objects
    # The bad image waits out its own backoff: between two tries it is not written at all.
    learner.record(Sighting((bad, good[0]), profile()))
    learner.flush()
    learner.record(Sighting((bad, good[0]), profile()))
    result = learner.flush()
    assert (result.written, result.failed, result.deferred) == (1, 0, 1)
    del store.broken[object_name(bad)]
    ticks.pass_backoff()
    learner.flush()
    assert stored(store, bad)["status"]["useCount"] == 5

"""The recorder's write rules: declared specs left alone, conflicts and races retried, errors counted."""

from __future__ import annotations

from typing import Any

import pytest

from imagesync.cachedimage import object_name
from imagesync.kubeclient import KubeError
from tests.webhook.recorder_store import (
    IMAGE,
    MemoryStore,
    Ticks,
    profile,
    recorder,
    stored,
)
from webhook.learning import Sighting


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

"""A plan's pull outcomes, puller by puller: each puller's outcomes handed on as one tuple.

A converging cluster at 1,000 nodes x 200 images holds a thousand finished pullers of 200
images: as one flat tuple a plan repeated their 200,000 outcomes every pass, and the
controller looked each up again to find it reported. Here a plan holds each puller's own
tuple (the same object pass after pass while the puller's pod object is), so both cost one
step per puller; whoever iterates the plan's outcomes still sees them one by one.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator, Sequence
from itertools import chain
from typing import overload

from prefetcher import observe
from prefetcher.model import PullOutcome


class PullOutcomes(Sequence[PullOutcome]):
    """Every puller's outcomes, one tuple per puller (or per failure), in the planner's order
    (read-only; equal to any sequence of the same outcomes)."""

    __slots__ = ("_size", "groups")

    def __init__(self, groups: Sequence[tuple[PullOutcome, ...]]) -> None:
        self.groups = tuple(groups)
        self._size = sum(map(len, self.groups))

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[PullOutcome]:
        return chain.from_iterable(self.groups)

    @overload
    def __getitem__(self, index: int) -> PullOutcome: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[PullOutcome]: ...

    def __getitem__(self, index: int | slice) -> PullOutcome | Sequence[PullOutcome]:
        return tuple(self)[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PullOutcomes) and all(map(_is, self.groups, other.groups)):
            return len(self.groups) == len(other.groups)
        if isinstance(other, Sequence):
            return len(self) == len(other) and tuple(self) == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"PullOutcomes({self._size} outcomes of {len(self.groups)} pullers)"


class ReportedOutcomes:
    """Which pull outcomes the controller has reported (metrics, log, the PrefetchFailed
    Event): each (puller, image) once while the puller lives. A puller's tuple of outcomes
    that the last plan held too, the same object, was reported then: a thousand finished
    pullers of 200 images are one look-up each per pass, not 200."""

    def __init__(self) -> None:
        self._images: dict[str, frozenset[str]] = {}  # puller uid → its images reported
        # id → each puller's tuple of outcomes in the last plan (held here: the ids stay theirs)
        self._groups: dict[int, tuple[PullOutcome, ...]] = {}

    def new(self, outcomes: Sequence[PullOutcome], live: Container[str]) -> list[PullOutcome]:
        """The outcomes of a plan not reported yet (now counted as reported); `live` holds
        the uids of the pods that still exist (the others are forgotten)."""
        reported = self._images = {
            uid: images for uid, images in self._images.items() if uid in live
        }
        known, handled = self._groups, {}
        fresh: list[PullOutcome] = []
        for group in groups_of(outcomes):
            handled[id(group)] = group
            if known.get(id(group)) is group:
                continue
            for outcome in group:
                before = reported.get(outcome.pod_uid, frozenset())
                if outcome.image in before:
                    continue
                # The images of a puller reported so far, as one set shared with the pullers
                # of the same images on other nodes (20,000 finished pullers wait for keepers).
                reported[outcome.pod_uid] = observe.image_set(
                    tuple(sorted(before | {outcome.image}))
                )
                fresh.append(outcome)
        self._groups = handled
        return fresh


def groups_of(outcomes: Sequence[PullOutcome]) -> Iterable[tuple[PullOutcome, ...]]:
    """A plan's outcomes a puller at a time (one at a time for a plan made by hand)."""
    if isinstance(outcomes, PullOutcomes):
        return outcomes.groups
    return ((outcome,) for outcome in outcomes)


def _is(a: object, b: object) -> bool:
    return a is b

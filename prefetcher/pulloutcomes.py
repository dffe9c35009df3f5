"""A plan's pull outcomes, puller by puller: each puller's outcomes handed on as one tuple.

A converging cluster at 1,000 nodes x 200 images holds a thousand finished pullers of 200
images: as one flat tuple a plan repeated their 200,000 outcomes every pass, and the
controller looked each up again to find it reported. Here a plan holds each puller's own
tuple (the same object pass after pass while the puller's pod object is), so both cost one
step per puller; whoever iterates the plan's outcomes still sees them one by one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from itertools import chain
from typing import overload

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


def _is(a: object, b: object) -> bool:
    return a is b

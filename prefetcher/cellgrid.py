"""A plan's cells, row by row: a pointer per (node, image) pair instead of an object.

At 1,000 nodes x 200 images a plan has 200,000 cells; as one `CellState` each (a 9-field
tuple naming its node and image) they took 25 MB, made again in part every pass. Here a
node's row holds, for each wanted image in rank order, its cell without the names (`Cell`),
and equal cells are one object: most cells of a large fleet are the same few values
(present; ineligible for one reason), so a row is a list of pointers. `CellState`s are made
only for whoever iterates the grid (tests, tools); the report reads the rows.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from datetime import datetime
from itertools import chain
from typing import Any, NamedTuple, overload

from prefetcher.model import CellState, CellStateKind


class Cell(NamedTuple):
    """A `CellState` without its node and image (the row and the column say them)."""

    state: CellStateKind
    reason: str = ""
    message: str = ""
    wanted: bool = False
    retry_at: datetime | None = None
    kind: str = ""
    attempts: int = 0


@functools.lru_cache(maxsize=8192)
def shared(cell: Cell) -> Cell:
    """The one object of every cell equal to `cell` (the cache holds the few thousand
    distinct values a fleet's cells take)."""
    return cell


PRESENT = shared(Cell("present", wanted=True))


def ineligible(why: str) -> Cell:
    return shared(Cell("ineligible", why))


class CellGrid(Sequence[CellState]):
    """Every node's row of cells, one cell per wanted image, in rank order (read-only)."""

    __slots__ = ("images", "nodes", "rows")

    def __init__(
        self, images: Sequence[str], nodes: Sequence[str], rows: Sequence[Sequence[Cell]]
    ) -> None:
        self.images = tuple(images)
        self.nodes = tuple(nodes)
        self.rows = tuple(rows)

    def by_row(self) -> Iterator[tuple[str, Sequence[Cell]]]:
        """(node, its row), row by row: the row's cells follow `images`."""
        return zip(self.nodes, self.rows, strict=True)

    def __len__(self) -> int:
        return sum(map(len, self.rows))

    def __iter__(self) -> Iterator[CellState]:
        images = self.images
        for node, row in self.by_row():
            for image, cell in zip(images, row, strict=True):
                yield CellState(node, image, *cell)

    @overload
    def __getitem__(self, index: int) -> CellState: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[CellState]: ...

    def __getitem__(self, index: int | slice) -> CellState | Sequence[CellState]:
        if isinstance(index, slice):
            return tuple(self)[index]
        width = len(self.images)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self) or not width:
            raise IndexError("cell index out of range")
        node, column = divmod(index, width)
        return CellState(self.nodes[node], self.images[column], *self.rows[node][column])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CellGrid):
            return (self.images, self.nodes) == (other.images, other.nodes) and all(
                map(_same_row, self.rows, other.rows)
            )
        if isinstance(other, Sequence):
            return len(self) == len(other) and all(map(_equal, self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"CellGrid({len(self.nodes)} nodes x {len(self.images)} images)"


def _same_row(a: Sequence[Cell], b: Sequence[Cell]) -> bool:
    return a is b or tuple(a) == tuple(b)


def _equal(a: Any, b: Any) -> bool:
    return bool(a == b)


def rows_of(cells: Sequence[CellState]) -> Iterator[tuple[str, str, Cell]]:
    """(node, image, cell) of any plan's cells: a grid's rows as they are, a sequence of
    `CellState`s (a plan made by hand) one by one."""
    if isinstance(cells, CellGrid):
        images = cells.images
        return chain.from_iterable(
            zip([node] * len(row), images, row, strict=True) for node, row in cells.by_row()
        )
    return ((c.node, c.image, Cell._make(c[2:])) for c in cells)

"""A plan's cells as rows of shared values: the same cells as one `CellState` per pair."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from prefetcher.cellgrid import PRESENT, Cell, CellGrid, ineligible, rows_of, shared
from prefetcher.model import CellState
from prefetcher.planner import plan
from prefetcher.planning.incremental import IncrementalPlanner
from tests.prefetcher.test_core_fixtures import APP, MISSING, image, world

RETRY = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
FAILED = Cell("failed", "ErrImagePull", "not found", True, RETRY, "not-found", 2)


def _grid() -> CellGrid:
    return CellGrid(
        ["a:1", "b:1"],
        ["n1", "n2"],
        [[PRESENT, ineligible("no GPU")], [shared(FAILED), PRESENT]],
    )


def _by_hand() -> tuple[CellState, ...]:
    return (
        CellState("n1", "a:1", "present", wanted=True),
        CellState("n1", "b:1", "ineligible", "no GPU"),
        CellState("n2", "a:1", "failed", "ErrImagePull", "not found", True, RETRY, "not-found", 2),
        CellState("n2", "b:1", "present", wanted=True),
    )


def test_a_grid_reads_as_the_cell_states_of_its_pairs() -> None:
    grid, by_hand = _grid(), _by_hand()
    assert tuple(grid) == by_hand
    assert len(grid) == 4
    assert grid[2] == by_hand[2] and grid[-1] == by_hand[3]
    assert grid[1:3] == by_hand[1:3]
    with pytest.raises(IndexError):
        grid[4]
    assert grid == by_hand and by_hand == grid
    assert grid == _grid()
    assert grid != by_hand[:3]
    assert grid != CellGrid(["a:1", "b:1"], ["n1", "n3"], grid.rows)
    assert list(rows_of(grid)) == list(rows_of(by_hand))
    assert [(node, image) for node, image, _ in rows_of(grid)] == [
        ("n1", "a:1"),
        ("n1", "b:1"),
        ("n2", "a:1"),
        ("n2", "b:1"),
    ]


def test_equal_cells_are_one_object() -> None:
    assert shared(Cell("present", wanted=True)) is PRESENT
    assert ineligible("cordoned") is ineligible("cordoned")
    assert shared(Cell(*FAILED)) is shared(FAILED)


def test_a_plans_cells_are_rows_of_shared_values_in_both_planners() -> None:
    w = world()
    w.images.append(image(MISSING, uses=1))
    for _ in range(6):
        w.step()
    snapshot = w.snapshot()
    full = plan(snapshot, w.config)
    incremental = IncrementalPlanner(w.config)
    incremental.full(snapshot)
    again = incremental.plan(snapshot)
    for result in (full, again):
        grid = result.cells
        assert isinstance(grid, CellGrid)
        assert len(grid) == len(grid.nodes) * len(grid.images) > 0
        present = [cell for row in grid.rows for cell in row if cell.state == "present"]
        assert len(present) > 1 and all(cell is PRESENT for cell in present)
    assert full.cells == again.cells
    assert any(c.image == APP and c.state == "present" for c in full.cells)

"""Stage 7, cells: the state of every (node, wanted image) pair, as the report shows it.

The hot path of a large cluster (a cell per node and image): most cells are present or
ineligible, so those are one shared `Cell` each and counted in plain integers; a node's
cells are a row of the plan's `CellGrid`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Container, Mapping, Sequence
from dataclasses import dataclass

from imagesync.config import Config
from prefetcher import presence
from prefetcher.cellgrid import PRESENT, Cell, CellGrid, ineligible, shared
from prefetcher.model import BudgetExclusion, PullKey, PullRecord
from prefetcher.planning.images import MergedImage, size_on
from prefetcher.planning.state import PlanState
from prefetcher.planning.targets import NodeTarget
from prefetcher.planning.timing import retry_at


@dataclass
class NodeCells:
    """One node's cells in rank order, its counts by state, and its budget exclusions."""

    cells: list[Cell]
    tally: Counter[str]
    left_out: list[BudgetExclusion]
    present_refs: list[str]  # wanted images present here (counted apart: the common case)
    other_states: list[tuple[str, str]]  # (image, state) of the other wanted cells


def cell(
    entry: NodeTarget,
    image: MergedImage,
    present: Collection[str],
    pulling: Container[PullKey],
    started: Collection[PullKey],
    records: Mapping[PullKey, PullRecord],
    waiting: Mapping[PullKey, str],
    config: Config,
) -> Cell:
    """The state of one (node, wanted image) pair."""
    ref = image.image
    key = (entry.node.name, ref)
    if entry.problem is not None:
        return ineligible(entry.problem)
    if ref in entry.not_placed:
        return ineligible(entry.not_placed[ref])
    if ref in entry.left_out:
        return ineligible(entry.left_out[ref])
    if ref in present:
        return PRESENT
    if key in pulling:
        return _PULLING
    if key in started:
        return _STARTING
    record = records.get(key)
    if record is not None:
        return shared(
            Cell(
                "failed",
                record.reason,
                record.message,
                wanted=True,
                retry_at=retry_at(record, config),
                kind=presence.failure_kind(record.reason, record.message),
                attempts=record.attempts,
            )
        )
    return shared(Cell("missing", message=waiting.get(key, ""), wanted=True))


_PULLING = shared(Cell("pulling", message="puller running", wanted=True))
_STARTING = shared(Cell("pulling", message="puller starting", wanted=True))


def node_cells(
    entry: NodeTarget,
    wanted: Sequence[MergedImage],
    present: Collection[str],
    pulling: Container[PullKey],
    started: Collection[PullKey],
    records: Mapping[PullKey, PullRecord],
    waiting: Mapping[PullKey, str],
    config: Config,
) -> NodeCells:
    """Every wanted image's cell on one node."""
    name = entry.node.name
    out = NodeCells([], Counter(), [], [], [])
    cells, tally = out.cells, out.tally
    if entry.problem is not None:
        cells.extend([ineligible(entry.problem)] * len(wanted))
        tally["ineligible"] = len(wanted)
        return out
    not_placed, left_out = entry.not_placed, entry.left_out
    ineligible_count = 0
    for image in wanted:
        ref = image.image
        why = not_placed.get(ref)
        if why is not None:
            cells.append(ineligible(why))
            ineligible_count += 1
        elif ref in present and ref not in left_out:
            cells.append(PRESENT)
            out.present_refs.append(ref)
        else:
            state = cell(entry, image, present, pulling, started, records, waiting, config)
            cells.append(state)
            if state.wanted:
                out.other_states.append((ref, state.state))
                tally[state.state] += 1
            else:
                ineligible_count += 1
                size = size_on(image, entry.node)
                out.left_out.append(BudgetExclusion(name, ref, size, image.score, state.reason))
    if ineligible_count:
        tally["ineligible"] += ineligible_count
    if out.present_refs:
        tally["present"] += len(out.present_refs)
    return out


def fill_cells(state: PlanState) -> None:
    """Every (node, wanted image) cell, with the counts per node and per image."""
    started = {(p.node, image) for p in state.pulls for image in p.images}
    empty: frozenset[str] = frozenset()
    rows: list[list[Cell]] = []
    left_out: list[BudgetExclusion] = []
    for entry in state.targets.values():
        name = entry.node.name
        result = node_cells(
            entry,
            state.wanted,
            state.present.get(name, empty),
            state.pulling,
            started,
            state.records,
            state.waiting,
            state.config,
        )
        rows.append(result.cells)
        left_out += result.left_out
        state.node_counts[name] = result.tally
        state.counts.update(result.other_states)
        state.counts.update((ref, "present") for ref in result.present_refs)
    names = [entry.node.name for entry in state.targets.values()]
    state.cells = CellGrid([i.image for i in state.wanted], names, rows)
    state.left_out = left_out

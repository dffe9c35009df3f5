"""Stage 7, cells: the state of every (node, wanted image) pair, as the report shows it.

The hot path of a large cluster (a cell per node and image): most cells are present or
ineligible, so those are built inline and counted in plain integers."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from imagesync.config import Config
from prefetcher import presence
from prefetcher.model import BudgetExclusion, CellState, PullKey, PullRecord
from prefetcher.planning.images import MergedImage, size_on
from prefetcher.planning.state import PlanState
from prefetcher.planning.targets import NodeTarget
from prefetcher.planning.timing import retry_at


@dataclass
class NodeCells:
    """One node's cells in rank order, its counts by state, and its budget exclusions."""

    cells: list[CellState]
    tally: Counter[str]
    left_out: list[BudgetExclusion]
    present_refs: list[str]  # wanted images present here (counted apart: the common case)
    other_states: list[tuple[str, str]]  # (image, state) of the other wanted cells


def cell(
    entry: NodeTarget,
    image: MergedImage,
    present: Collection[str],
    pulling: Collection[PullKey],
    started: Collection[PullKey],
    records: Mapping[PullKey, PullRecord],
    waiting: Mapping[PullKey, str],
    config: Config,
) -> CellState:
    """The state of one (node, wanted image) pair."""
    name, ref = entry.node.name, image.image
    key = (name, ref)
    if entry.problem is not None:
        return CellState(name, ref, "ineligible", entry.problem)
    if ref in entry.not_placed:
        return CellState(name, ref, "ineligible", entry.not_placed[ref])
    if ref in entry.left_out:
        return CellState(name, ref, "ineligible", entry.left_out[ref])
    if ref in present:
        return CellState(name, ref, "present", wanted=True)
    if key in pulling:
        return CellState(name, ref, "pulling", message="puller running", wanted=True)
    if key in started:
        return CellState(name, ref, "pulling", message="puller starting", wanted=True)
    record = records.get(key)
    if record is not None:
        return CellState(
            name,
            ref,
            "failed",
            record.reason,
            record.message,
            wanted=True,
            retry_at=retry_at(record, config),
            kind=presence.failure_kind(record.reason, record.message),
            attempts=record.attempts,
        )
    return CellState(name, ref, "missing", message=waiting.get(key, ""), wanted=True)


def node_cells(
    entry: NodeTarget,
    wanted: Sequence[MergedImage],
    present: Collection[str],
    pulling: Collection[PullKey],
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
        cells.extend(CellState(name, image.image, "ineligible", entry.problem) for image in wanted)
        tally["ineligible"] = len(wanted)
        return out
    not_placed, left_out = entry.not_placed, entry.left_out
    ineligible = 0
    for image in wanted:
        ref = image.image
        why = not_placed.get(ref)
        if why is not None:
            cells.append(CellState(name, ref, "ineligible", why))
            ineligible += 1
        elif ref in present and ref not in left_out:
            cells.append(CellState(name, ref, "present", "", "", True))
            out.present_refs.append(ref)
        else:
            state = cell(entry, image, present, pulling, started, records, waiting, config)
            cells.append(state)
            if state.wanted:
                out.other_states.append((ref, state.state))
                tally[state.state] += 1
            else:
                ineligible += 1
                size = size_on(image, entry.node)
                out.left_out.append(BudgetExclusion(name, ref, size, image.score, state.reason))
    if ineligible:
        tally["ineligible"] += ineligible
    if out.present_refs:
        tally["present"] += len(out.present_refs)
    return out


def fill_cells(state: PlanState) -> None:
    """Every (node, wanted image) cell, with the counts per node and per image."""
    started = {(p.node, image) for p in state.pulls for image in p.images}
    empty: frozenset[str] = frozenset()
    cells: list[CellState] = []
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
        cells += result.cells
        left_out += result.left_out
        state.node_counts[name] = result.tally
        state.counts.update(result.other_states)
        state.counts.update((ref, "present") for ref in result.present_refs)
    state.cells = cells
    state.left_out = left_out

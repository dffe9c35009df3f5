"""Each node's report cells, kept between passes and patched where their inputs changed,
and the per-image counts they add up to (the incremental form of the cells stage)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from itertools import chain
from operator import is_not
from typing import NamedTuple

from prefetcher.cellgrid import CellGrid, ineligible
from prefetcher.model import CELL_STATES, BudgetExclusion, PullKey, PullRecord
from prefetcher.planning.cells import cell, node_cells
from prefetcher.planning.images import size_on
from prefetcher.planning.memo import EMPTY, ImageEdit, NodeMemo
from prefetcher.planning.state import PlanState
from prefetcher.planning.targets import NodeTarget

_PLACEHOLDER = ineligible("")
# (image, its state before, after) of a wanted cell not present; None: not such a cell
Move = tuple[str, str | None, str | None]


class CellBook:
    """The per-image counts of every node's cells (the cells themselves live in each
    node's memo), updated node by node."""

    def __init__(self) -> None:
        self._present_counts: Counter[str] = Counter()
        self._other_counts: Counter[tuple[str, str]] = Counter()
        self._inputs = _Inputs({}, frozenset(), {}, {})  # the last pass's
        self._left_out: list[list[BudgetExclusion]] = []  # every node's budget exclusions
        self._all_left_out: tuple[BudgetExclusion, ...] = ()
        self._totals: dict[str, int] = dict.fromkeys(CELL_STATES, 0)  # every node's cells

    def drop(self, memo: NodeMemo) -> None:
        """A node left: its cells no longer count."""
        self._count(memo, EMPTY, {})
        _add(self._totals, memo.tally, -1)

    def fill(self, memos: Mapping[str, NodeMemo], state: PlanState, edit: ImageEdit) -> None:
        """fill_cells(): each node's cells patched where their inputs changed."""
        config, wanted = state.config, state.wanted
        started = {(p.node, image) for p in state.pulls for image in p.images}
        # The pass's waiting reasons as they are (no stage changes them after the pulls): a
        # pair each while a thousand nodes converge, 10 MiB a copy.
        inputs = _Inputs(
            dict(state.pulling.by_node), frozenset(started), dict(state.records), state.waiting
        )
        touched_on = inputs.differences(self._inputs)
        self._inputs = inputs
        removed_at = sorted((edit.old_position[r] for r in edit.removed), reverse=True)
        for name, memo in memos.items():
            entry = memo.target
            moves: list[Move] | None = None  # (None: every cell built anew)
            before, memo.cells_target = memo.cells_target, entry
            if memo.rebuild and (
                before is None or before.problem is not None or entry.problem is not None
            ):
                built = node_cells(
                    entry,
                    wanted,
                    memo.present,
                    state.pulling,
                    started,
                    state.records,
                    state.waiting,
                    config,
                )
                memo.cells, memo.left_out = built.cells, built.left_out
                others = dict(built.other_states)
                memo.rebuild = False
            else:
                touched = touched_on.get(name, set())
                if memo.cells_present is not memo.present:
                    touched |= memo.cells_present ^ memo.present
                if memo.rebuild:
                    # Planned anew: only the images whose place in the target moved change.
                    assert before is not None
                    touched |= _moved(before, entry)
                    memo.left_out = _exclusions(entry, state)
                    memo.rebuild = False
                elif not touched and edit.empty:
                    continue  # nothing this node's cells depend on changed
                touched.update(edit.changed)
                others, moves = self._patch_cells(memo, touched, edit, removed_at, state, started)
            memo.cells_present = memo.present
            counted = memo.desired if entry.problem is None else EMPTY
            tally = memo.tally
            if moves is None or not tally:
                memo.tally = _tally(len(wanted), counted, others)
                _add(self._totals, tally, -1)
                _add(self._totals, memo.tally, 1)
            else:
                memo.tally = _retally(tally, len(wanted), counted, others, moves, self._totals)
            self._count(memo, counted, others, moves)
        state.cells = CellGrid(
            [image.image for image in wanted],
            list(memos),
            [m.cells for m in memos.values()],
        )
        left_out = [m.left_out for m in memos.values()]
        if len(left_out) != len(self._left_out) or any(map(is_not, left_out, self._left_out)):
            self._all_left_out = tuple(chain.from_iterable(left_out))
            self._left_out = left_out
        state.left_out = self._all_left_out
        state.node_counts = {name: m.tally for name, m in memos.items()}
        state.totals = self._totals
        counts: Counter[tuple[str, str]] = Counter(
            {(ref, "present"): n for ref, n in self._present_counts.items()}
        )
        counts.update(self._other_counts)
        state.counts = counts

    def _patch_cells(
        self,
        memo: NodeMemo,
        touched: set[str],
        edit: ImageEdit,
        removed_at: list[int],
        state: PlanState,
        started_keys: set[PullKey],
    ) -> tuple[dict[str, str], list[Move]]:
        """The node's cells with the removed images' taken out, the changed ones' put in,
        and the touched ones' rebuilt; returns its other (not present) wanted states (the
        same dict when none moved) and the moves among them. (Its
        budget exclusions stay: a target with any is patched only when none of them and no
        image it places changed; the planner gives them new scores.)"""
        cells = memo.cells.copy()
        for index in removed_at:
            del cells[index]
        for ref in edit.changed:
            cells.insert(edit.position[ref], _PLACEHOLDER)
        others = memo.others
        after: dict[str, str | None] = dict.fromkeys(edit.removed & others.keys())
        for ref in touched:
            at = edit.position.get(ref)
            if at is None:
                continue
            fresh = cell(
                memo.target,
                state.by_image[ref],
                memo.present,
                state.pulling,
                started_keys,
                state.records,
                state.waiting,
                state.config,
            )
            cells[at] = fresh
            after[ref] = fresh.state if fresh.wanted and fresh.state != "present" else None
        moves = [
            (ref, others.get(ref), new) for ref, new in after.items() if others.get(ref) != new
        ]
        if moves:
            others = dict(others)
            for ref, _, new in moves:
                if new is None:
                    del others[ref]
                else:
                    others[ref] = new
        memo.cells = cells
        return others, moves

    def _count(
        self,
        memo: NodeMemo,
        counted: frozenset[str],
        others: dict[str, str],
        moves: list[Move] | None = None,
    ) -> None:
        """Move the node's share of the per-image counts from the last pass's to this one's
        (by `moves`, the states that changed, when known)."""
        if counted is not memo.counted and counted != memo.counted:
            present_counts = self._present_counts
            for ref in counted - memo.counted:
                present_counts[ref] += 1
            for ref in memo.counted - counted:
                present_counts[ref] -= 1
        if moves is not None:
            other_counts = self._other_counts
            for ref, old, new in moves:
                if old is not None:
                    other_counts[(ref, old)] -= 1
                if new is not None:
                    other_counts[(ref, new)] += 1
        elif others is not memo.others and others != memo.others:
            other_counts = self._other_counts
            for pair in memo.others.items() - others.items():
                other_counts[pair] -= 1
            for pair in others.items() - memo.others.items():
                other_counts[pair] += 1
        memo.counted, memo.others = counted, others


def _moved(before: NodeTarget, after: NodeTarget) -> set[str]:
    """The images placed, not placed or left out, or for another reason, in only one of two
    targets of a node."""
    moved = set(before.fitted_set ^ after.fitted_set)
    moved.update(ref for ref, _ in before.not_placed.items() ^ after.not_placed.items())
    moved.update(ref for ref, _ in before.left_out.items() ^ after.left_out.items())
    return moved


def _exclusions(entry: NodeTarget, state: PlanState) -> list[BudgetExclusion]:
    """The node's budget exclusions, as `node_cells` makes them (rank order)."""
    node, by_image = entry.node, state.by_image
    return [
        BudgetExclusion(node.name, ref, size_on(by_image[ref], node), by_image[ref].score, why)
        for ref, why in entry.left_out.items()
    ]


class _Inputs(NamedTuple):
    """What cells depend on besides the targets and present images: pulls running, pulls
    starting, failure records, why a missing image waits."""

    pulling: dict[str, frozenset[str]]  # node → the images its pullers in flight pull
    started: frozenset[PullKey]
    records: dict[PullKey, PullRecord]
    waiting: dict[PullKey, str]

    def differences(self, before: _Inputs) -> dict[str, set[str]]:
        """Node → the images whose inputs differ from `before`'s."""
        out: dict[str, set[str]] = {}
        pulling, was = self.pulling, before.pulling
        for node in pulling.keys() | was.keys():
            now, then = pulling.get(node, EMPTY), was.get(node, EMPTY)
            if now is not then:  # (a puller the same object: its node's set the same one)
                out.setdefault(node, set()).update(now ^ then)
        keys: set[PullKey] = set(self.started ^ before.started)
        keys.update(key for key, _ in self.records.items() ^ before.records.items())
        keys.update(key for key, _ in self.waiting.items() ^ before.waiting.items())
        for node, image in keys:
            out.setdefault(node, set()).add(image)
        return out


def _tally(wanted: int, counted: frozenset[str], others: Mapping[str, str]) -> dict[str, int]:
    """A node's cells by state (every state, 0 when none): present, the other wanted states,
    the rest ineligible."""
    tally: dict[str, int] = dict.fromkeys(CELL_STATES, 0)
    for kind in others.values():
        tally[kind] += 1
    tally["present"] = len(counted)
    tally["ineligible"] = wanted - len(counted) - len(others)
    return tally


def _retally(
    before: Mapping[str, int],
    wanted: int,
    counted: frozenset[str],
    others: Mapping[str, str],
    moves: list[Move],
    totals: dict[str, int],
) -> Mapping[str, int]:
    """`_tally` from the node's last one and the moves since (the same dict when equal),
    with every node's `totals` moved alike."""
    present, ineligible_count = len(counted), wanted - len(counted) - len(others)
    if not moves and before["present"] == present and before["ineligible"] == ineligible_count:
        return before
    tally = dict(before)
    for _, old, new in moves:
        if old is not None:
            tally[old] -= 1
            totals[old] -= 1
        if new is not None:
            tally[new] += 1
            totals[new] += 1
    totals["present"] += present - tally["present"]
    totals["ineligible"] += ineligible_count - tally["ineligible"]
    tally["present"], tally["ineligible"] = present, ineligible_count
    return tally


def _add(totals: dict[str, int], tally: Mapping[str, int], sign: int) -> None:
    """Add a node's `tally` to (sign 1) or take it from (-1) every node's `totals`."""
    for kind, count in tally.items():
        totals[kind] += sign * count

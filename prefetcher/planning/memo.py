"""What the incremental planner keeps between passes: per node, and how the images changed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from prefetcher.model import BudgetExclusion, CellState, NodeInfo, NodeSummary
from prefetcher.planning.targets import NodeTarget

EMPTY: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ImageEdit:
    """How the ranked wanted images differ from the previous pass's."""

    refs: list[str]  # rank order
    position: dict[str, int]
    changed: list[str]  # new, or re-ranked / resized / re-placed, in rank order
    removed: set[str]  # no longer wanted, or changed (their old cells go)
    old_position: dict[str, int]
    old_size: dict[str, int]  # of the removed ones
    touched: set[str]  # removed or changed
    limited: Mapping[str, frozenset[str]]  # image placed by demand → the nodes it may go to
    everything: bool  # too much changed: plan every node from scratch
    rescored: bool = False  # some image's score changed (its place in the order did not)

    @property
    def empty(self) -> bool:
        return not self.changed and not self.removed


@dataclass
class NodeMemo:
    """What one node's previous pass computed, with the inputs it was computed from."""

    node: NodeInfo
    target: NodeTarget
    placements: dict[str, str | None]  # placement key → why not
    rebuild: bool = True  # the target was planned anew: so are the cells
    present: frozenset[str] = EMPTY
    fitted_seen: frozenset[str] | None = None  # the target images `missing` was made for
    desired: frozenset[str] = EMPTY  # target images present: what its keeper holds
    keeper: tuple[list[str], str] = field(default_factory=lambda: ([], ""))
    missing: list[str] = field(default_factory=list)
    # The cells, and the target and present images they were built with.
    cells: list[CellState] = field(default_factory=list)
    cells_target: NodeTarget | None = None
    cells_present: frozenset[str] = EMPTY
    counted: frozenset[str] = EMPTY  # images with a present cell
    others: dict[str, str] = field(default_factory=dict)  # image → state, other wanted cells
    tally: Mapping[str, int] = field(default_factory=dict)
    left_out: list[BudgetExclusion] = field(default_factory=list)
    summary: tuple[NodeTarget, Mapping[str, int], NodeSummary] | None = None

"""What the incremental planner keeps between passes (per node, how the images changed) and
whether what it kept still holds."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from imagesync.config import Config
from prefetcher import scoring
from prefetcher.cellgrid import Cell
from prefetcher.model import BudgetExclusion, NodeInfo, NodeSummary, WantedImage
from prefetcher.planning.images import ImageFacts, MergedImage
from prefetcher.planning.targets import NodeTarget

EMPTY: frozenset[str] = frozenset()
# A moment at which time alone changes a merged image is trusted only this far from it.
STEADY_MARGIN = timedelta(seconds=1)


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
    cells: list[Cell] = field(default_factory=list)  # a row of the plan's CellGrid
    cells_target: NodeTarget | None = None
    cells_present: frozenset[str] = EMPTY
    counted: frozenset[str] = EMPTY  # images with a present cell
    others: dict[str, str] = field(default_factory=dict)  # image → state, other wanted cells
    tally: Mapping[str, int] = field(default_factory=dict)
    left_out: list[BudgetExclusion] = field(default_factory=list)
    summary: tuple[NodeTarget, Mapping[str, int], NodeSummary] | None = None


def with_scores(
    left_out: list[BudgetExclusion], by_image: Mapping[str, MergedImage]
) -> list[BudgetExclusion]:
    """A node's budget exclusions (the report shows them with their images' scores) with
    the current scores."""
    out = []
    for b in left_out:
        score = by_image[b.image].score
        out.append(
            b if b.score == score else BudgetExclusion(b.node, b.image, b.size, score, b.why)
        )
    return out


def same_placement(old: NodeInfo, new: NodeInfo) -> bool:
    """Whether every image's placement on `old` holds on `new` (the fields it reads)."""
    return (
        old.name == new.name
        and old.labels == new.labels
        and old.taints == new.taints
        and old.arch == new.arch
        and old.os == new.os
        and old.gpu_allocatable == new.gpu_allocatable
        and old.allocatable == new.allocatable
    )


def same_cells(old: NodeTarget, new: NodeTarget) -> bool:
    """Whether a node's cells and budget exclusions made for `old` hold for `new`."""
    if old.problem != new.problem or old.fitted != new.fitted or old.not_placed != new.not_placed:
        return False
    if old.left_out != new.left_out:
        return False
    before, after = old.node.hinted_images, new.node.hinted_images  # exclusions' sizes
    return all(before.get(ref) == after.get(ref) for ref in old.left_out)


def same_but_status(old: WantedImage, new: WantedImage) -> bool:
    """The two objects differ at most in the status the prefetcher reports."""
    return old is new or dataclasses.replace(new, reported=old.reported) == old


def with_objects(facts: ImageFacts, objects: tuple[WantedImage, ...]) -> ImageFacts:
    """`facts` holding `objects` (the same objects but for their status) in its order."""
    by_name = {o.name: o for o in objects}
    return dataclasses.replace(facts, objects=tuple(by_name[o.name] for o in facts.objects))


def steady_until(facts: ImageFacts, now: datetime, config: Config) -> datetime:
    """A moment before which `merged_image(facts, t, ...)` is the same for every t from `now`
    (with the same demand): its objects' retention ends and its first use's urgent window
    (`recent`) lie at least STEADY_MARGIN away."""
    moments: list[datetime] = []
    retention = timedelta(seconds=config.image_retention)
    for obj, used in zip(facts.objects, facts.last_used, strict=True):
        if used is not None and not scoring.is_declared(obj):
            moments.append(used + retention)
    if facts.first_created is not None:
        moments.append(facts.first_created)
        moments.append(facts.first_created + timedelta(seconds=config.urgent_window))
    until = datetime.max.replace(tzinfo=UTC)
    for moment in moments:
        if now < moment + STEADY_MARGIN:
            until = min(until, moment - STEADY_MARGIN)
    return until

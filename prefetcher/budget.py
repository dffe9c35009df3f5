"""The disk budget per node: how many bytes of prefetched images it may hold, and which win.

The node's own pods come first. Everything the node must hold stays below the kubelet's
image GC threshold, and prefetched images alone stay within `diskBudget`:

    prefetched images                                        <= diskBudget * capacity
    other use + pods' images + prefetched the pods do not use <= GC threshold% * capacity

"other use" is what the node stores that image-sync does not manage: the runtime's figure
when known, else the sizes `node.status.images` lists for images nobody wants (a lower
bound: at most 50 are listed). "pods' images" are the wanted images of the workload pods
running on or bound to the node (present, or being pulled: their bytes are about to land);
an image the pods use and the keeper holds counts once. When the pods need more room the
budget shrinks and the lowest-ranked images leave the target; when they leave it grows back.

Against churn the two GC thresholds make a band: an image already on the node (held) stays
while the sum is below the high threshold, a new one is added only below the low threshold
(the kubelet's own hysteresis: GC starts at high and frees down to low). A pod's image of
less than the band's width coming and going never replaces the keeper.

Images are taken in rank order (declared first, then score) and each one that still fits
is kept, so one 20 GB image that does not fit does not push out many small ones behind it.
A node with unknown capacity has no limit.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from imagesync.config import Config
from prefetcher.model import NodeInfo

_GB = 1e9


class BudgetItem(NamedTuple):
    """An eligible image competing for a node's disk, in rank order."""

    image: str
    size: int
    score: float


@dataclass(frozen=True, slots=True)
class NodeRoom:
    """The limits of one node's prefetched images, and what took the rest of its disk."""

    capacity: int
    share_pct: float  # diskBudget, 0 to 1
    high_pct: float  # the kubelet's image GC thresholds, percent
    low_pct: float
    share: int  # diskBudget * capacity: every prefetched image
    high: int  # GC high threshold - other use - pods' images: for held images the pods do not use
    low: int  # the same below the GC low threshold: images not on the node yet
    other: int
    pods: int  # bytes of the wanted images the node's pods use
    pod_images: int  # how many


@dataclass(frozen=True)
class BudgetResult:
    """What fits (in rank order), the bytes it takes, and what was left out with why.

    `budget` is what prefetched images may take now (None: no limit), `alone` the fitted
    bytes the node's pods do not use, and `held_matters` whether an image fitted or not
    because it was already on the node (the band between the two GC thresholds)."""

    budget: int | None
    fitted: tuple[str, ...]
    used: int
    left_out: tuple[tuple[BudgetItem, str], ...]
    alone: int = 0
    held_matters: bool = False
    reason: str = ""


def node_room(
    node: NodeInfo, config: Config, managed: Collection[str], pods: int = 0, pod_images: int = 0
) -> NodeRoom | None:
    """The limits of `node` (`pods`: bytes of the `pod_images` wanted images its own pods
    use); None when its capacity is unknown."""
    capacity = node.image_fs_capacity
    if not capacity:
        return None
    other = node.image_fs_other_used
    if other is None:
        other = sum(size for image, size in node.hinted_images.items() if image not in managed)
    high_pct = config.image_gc_high_threshold
    low_pct = min(config.image_gc_low_threshold, high_pct)
    return NodeRoom(
        capacity=capacity,
        share_pct=config.disk_budget,
        high_pct=high_pct,
        low_pct=low_pct,
        share=int(config.disk_budget * capacity),
        high=int(high_pct / 100.0 * capacity) - other - pods,
        low=int(low_pct / 100.0 * capacity) - other - pods,
        other=other,
        pods=pods,
        pod_images=pod_images,
    )


def format_bytes(size: float) -> str:
    """`20.4 GB`, `512 MB`: decimal units as registries and the kubelet report them."""
    if size >= _GB:
        return f"{size / _GB:.1f} GB"
    if size >= 1e6:
        return f"{size / 1e6:.0f} MB"
    return f"{size / 1e3:.0f} kB"


def fit(
    room: NodeRoom | None,
    items: Sequence[BudgetItem],
    pods: Collection[str] = (),
    held: Collection[str] = (),
) -> BudgetResult:
    """Keep each item, best first, that still fits (`pods`: the images the node's pods use,
    `held`: those already on the node); say why the others do not."""
    if room is None:
        every = tuple(i.image for i in items)
        size = sum(i.size for i in items)
        return BudgetResult(None, every, size, (), reason=budget_reason(None, None))
    used = alone = 0
    held_matters = False
    fitted: list[str] = []
    left_out: list[tuple[BudgetItem, str]] = []
    for item in items:
        size = item.size
        if used + size > room.share:
            left_out.append((item, _over_share(item, room, used, len(fitted))))
            continue
        if item.image not in pods:
            after = alone + size
            if room.low < after <= room.high:
                held_matters = True
            # Past the high threshold the image is out whether held or not (the reason
            # must not depend on what is held then); in the band, only a new one is.
            if after > room.high or (after > room.low and item.image not in held):
                left_out.append((item, _over_gc(item, room, alone, len(fitted))))
                continue
            alone = after
        used += size
        fitted.append(item.image)
    budget = _budget(room, used, alone)
    return BudgetResult(
        budget,
        tuple(fitted),
        used,
        tuple(left_out),
        alone=alone,
        held_matters=held_matters,
        reason=budget_reason(room, budget),
    )


def shown_budget(room: NodeRoom | None, used: int, alone: int) -> int | None:
    """What prefetched images may take on the node now: its share, or what the GC threshold
    leaves beside its other use and the images its pods use but the keeper does not hold."""
    return None if room is None else _budget(room, used, alone)


def _budget(room: NodeRoom, used: int, alone: int) -> int:
    return max(0, min(room.share, room.high + used - alone))


def fits_all(room: NodeRoom | None, used: int, alone: int) -> bool:
    """Do these bytes fit whichever images are held (below the share and the low threshold)?"""
    return room is None or (used <= room.share and alone <= room.low)


def budget_reason(room: NodeRoom | None, budget: int | None) -> str:
    """Which limit sets the node's budget, for the report."""
    if room is None or budget is None:
        return "image filesystem size unknown: no limit"
    capacity = format_bytes(room.capacity)
    if budget >= room.share:
        return f"diskBudget {room.share_pct:.0%} of {capacity}"
    parts = [f"image GC high threshold {room.high_pct:g} % of {capacity}"]
    if room.other:
        parts.append(f"less {format_bytes(room.other)} other use")
    if room.pods:
        parts.append(
            f"less {format_bytes(room.pods)} for {room.pod_images} image(s) the node's pods use"
        )
    return ", ".join(parts)


def _over_share(item: BudgetItem, room: NodeRoom, used: int, ahead: int) -> str:
    return (
        f"disk budget: needs {format_bytes(item.size)}, "
        f"{format_bytes(max(0, room.share - used))} of {format_bytes(room.share)} left "
        f"after {ahead} higher-ranked image(s)"
    )


def _over_gc(item: BudgetItem, room: NodeRoom, alone: int, ahead: int) -> str:
    """An image the GC thresholds leave no room for: past the high one, or a new image past
    the low one."""
    high = alone + item.size > room.high
    which, pct, limit = (
        ("high", room.high_pct, room.high) if high else ("low", room.low_pct, room.low)
    )
    beside = [f"after {ahead} higher-ranked image(s)"]
    if room.other:
        beside.append(f"{format_bytes(room.other)} other use")
    if room.pods:
        beside.append(
            f"{format_bytes(room.pods)} for {room.pod_images} image(s) the node's pods use"
        )
    return (
        f"disk budget: needs {format_bytes(item.size)}, {format_bytes(max(0, limit - alone))} "
        f"left below the image GC {which} threshold ({pct:g} %) {', '.join(beside)}"
    )

"""The disk budget per node: how many bytes of prefetched images it may hold, and which win.

The node's own pods come first: the wanted images of the workload pods running on or bound
to it (present, or being pulled: their bytes are about to land) count as used before the
budget is taken:

    budget = min(diskBudget * capacity, GC high threshold% * capacity - other use) - pods' images

"pods' images" are those of the pods there now and of those that used the node within
`budgetHold` (`prefetcher.budgethold`): the budget grows back only once the pods have needed
less room for that long, so what image GC removed for them is not pulled again at once.

"other use" is what the node stores that image-sync does not manage: the runtime's figure
when known, else the sizes `node.status.images` lists for images nobody wants (a lower
bound: at most 50 are listed). Staying under the GC high threshold matters: past it the
kubelet deletes unused images. An image the pods use that the keeper already holds counts
once (it stays, at no cost); one it does not hold is added only if it fits beside the pods'
bytes (under pressure their own containers pin it). An image they used within budgetHold
and no longer use keeps its room while the keeper does not hold it, and competes like any
other while it does: the keeper then pins no more than before. When
the pods need more room the lowest-ranked images that no longer fit leave the keeper (the
kubelet's image GC may then remove them); when the pods leave the budget grows back,
once their images' hold has lapsed.

Against churn, a band as wide as the kubelet's two GC thresholds (high - low, 5 % of the
disk by default): an image already on the node stays up to the budget, a new one is added
only while it leaves the band free. A pod's image smaller than the band coming and going
replaces no keeper, and an image dropped for the pods comes back only once there is room
for it and the band.

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
    limit: int  # min(diskBudget, GC high threshold - other use): before the pods' images
    keep: int  # limit - pods' images: for held images the pods do not use
    add: int  # the same, a band's width lower: for images not on the node yet
    other: int
    pods: int  # bytes of the wanted images the node's pods use, or used within `hold`
    pod_images: int  # how many they use now
    by_share: bool  # diskBudget sets the limit (else the GC threshold)
    hold: float = 0.0  # budgetHold, seconds
    lately: int = 0  # how many they used within `hold`, no longer use and are not held


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
    node: NodeInfo,
    config: Config,
    managed: Collection[str],
    pods: int = 0,
    pod_images: int = 0,
    lately: int = 0,
) -> NodeRoom | None:
    """The limits of `node` (`pods`: bytes of the `pod_images` wanted images its own pods
    use and of the `lately` ones they used within budgetHold); None when its capacity is
    unknown."""
    capacity = node.image_fs_capacity
    if not capacity:
        return None
    other = node.image_fs_other_used
    if other is None:
        other = sum(size for image, size in node.hinted_images.items() if image not in managed)
    high_pct = config.image_gc_high_threshold
    low_pct = min(config.image_gc_low_threshold, high_pct)
    share = int(config.disk_budget * capacity)
    below_gc = int(high_pct / 100.0 * capacity) - other
    band = int((high_pct - low_pct) / 100.0 * capacity)
    limit = max(0, min(share, below_gc))
    return NodeRoom(
        capacity=capacity,
        share_pct=config.disk_budget,
        high_pct=high_pct,
        low_pct=low_pct,
        limit=limit,
        keep=limit - pods,
        add=limit - pods - band,
        other=other,
        pods=pods,
        pod_images=pod_images,
        by_share=share <= below_gc,
        hold=config.budget_hold,
        lately=lately,
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
    already counted; `held`: those already on the node); say why the others do not."""
    if room is None:
        every = tuple(i.image for i in items)
        size = sum(i.size for i in items)
        return BudgetResult(None, every, size, (), reason=budget_reason(None))
    used = alone = 0
    held_matters = False
    fitted: list[str] = []
    left_out: list[tuple[BudgetItem, str]] = []
    for item in items:
        size = item.size
        if item.image in pods:
            held_matters = True
        if item.image not in pods or item.image not in held:
            # An image the pods use and the keeper does not hold is added only if it fits
            # beside their bytes (it counts twice while they run): under pressure their own
            # containers pin it, and a keeper replaced twice per pod would gain nothing.
            after = alone + size
            if room.add < after <= room.keep:
                held_matters = True
            # Past `keep` the image is out whether held or not (its reason must not depend
            # on what is held then); in the band, only a new one is.
            if after > room.keep or (after > room.add and item.image not in held):
                left_out.append((item, _left_out(item, room, alone, len(fitted))))
                continue
            alone = after
        used += size
        fitted.append(item.image)
    return BudgetResult(
        shown_budget(room, used, alone),
        tuple(fitted),
        used,
        tuple(left_out),
        alone=alone,
        held_matters=held_matters,
        reason=budget_reason(room),
    )


def shown_budget(room: NodeRoom | None, used: int, alone: int) -> int | None:
    """What prefetched images may take on the node now: the limit less the images its pods
    use that the keeper does not hold (those it holds count once)."""
    return None if room is None else max(0, room.keep + used - alone)


def fits_all(room: NodeRoom | None, used: int, alone: int) -> bool:
    """Do these bytes fit whichever images are held (below the band)?"""
    return room is None or alone <= room.add


def budget_reason(room: NodeRoom | None) -> str:
    """Which limit sets the node's budget, for the report."""
    if room is None:
        return "image filesystem size unknown: no limit"
    capacity = format_bytes(room.capacity)
    if room.by_share:
        parts = [f"diskBudget {room.share_pct:.0%} of {capacity}"]
    else:
        parts = [f"image GC high threshold {room.high_pct:g} % of {capacity}"]
        if room.other:
            parts.append(f"less {format_bytes(room.other)} other use")
    if room.pods:
        parts.append(f"less {format_bytes(room.pods)} for {_pods_use(room)}")
    return ", ".join(parts)


def _pods_use(room: NodeRoom) -> str:
    """Whose images the pods' bytes are: the node's pods' now, and those held for it."""
    now = f"{room.pod_images} image(s) the node's pods use"
    if not room.lately:
        return now
    within = f"used within budgetHold {format_duration(room.hold)} (held)"
    if room.pod_images:
        return f"{now} and {room.lately} they {within}"
    return f"{room.lately} image(s) the node's pods {within}"


def format_duration(seconds: float) -> str:
    """`1h`, `90m`, `45s`: as the settings are written."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _left_out(item: BudgetItem, room: NodeRoom, alone: int, ahead: int) -> str:
    """Why an image does not fit: past the limit, or a new image in the band below it."""
    new = alone + item.size <= room.keep
    limit = room.add if new else room.keep
    why = (
        f"disk budget: needs {format_bytes(item.size)}, {format_bytes(max(0, limit - alone))} "
        f"of {format_bytes(max(0, limit))} left after {ahead} higher-ranked image(s)"
    )
    if room.pods:
        use = (
            "use"
            if not room.lately
            else f"use or used within budgetHold {format_duration(room.hold)}"
        )
        count = room.pod_images + room.lately
        why += f" (the node's pods {use} {format_bytes(room.pods)} of {count} image(s))"
    if new:
        why += f" (a new image stops {room.high_pct - room.low_pct:g} % of the disk short)"
    return why

"""The disk budget per node: how many bytes of prefetched images it may hold, and which win.

budget = min(disk_budget * capacity, image_gc_high_threshold% * capacity - other use)

where capacity is the image filesystem's size and "other use" is what the node stores
that image-sync does not manage: the runtime's figure when known, else the sizes
`node.status.images` lists for images nobody wants (a lower bound: at most 50 are listed).
Staying under the GC high threshold matters: past it the kubelet deletes unused images,
and the keeper pod would be the first thing to go under real disk pressure.

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


@dataclass(frozen=True)
class BudgetResult:
    """What fits (in rank order), the bytes it takes, and what was left out with why."""

    budget: int | None
    fitted: tuple[str, ...]
    used: int
    left_out: tuple[tuple[BudgetItem, str], ...]


def node_budget(node: NodeInfo, config: Config, managed: Collection[str]) -> int | None:
    """Bytes of prefetched images `node` may hold; None when its capacity is unknown."""
    capacity = node.image_fs_capacity
    if not capacity:
        return None
    other = node.image_fs_other_used
    if other is None:
        other = sum(size for image, size in node.hinted_images.items() if image not in managed)
    share = config.disk_budget * capacity
    below_gc = config.image_gc_high_threshold / 100.0 * capacity - other
    return max(0, int(min(share, below_gc)))


def format_bytes(size: float) -> str:
    """`20.4 GB`, `512 MB`: decimal units as registries and the kubelet report them."""
    if size >= _GB:
        return f"{size / _GB:.1f} GB"
    if size >= 1e6:
        return f"{size / 1e6:.0f} MB"
    return f"{size / 1e3:.0f} kB"


def fit(budget: int | None, items: Sequence[BudgetItem]) -> BudgetResult:
    """Keep each item, best first, that still fits; say why the others do not."""
    if budget is None:
        return BudgetResult(None, tuple(i.image for i in items), sum(i.size for i in items), ())
    used = 0
    fitted: list[str] = []
    left_out: list[tuple[BudgetItem, str]] = []
    for item in items:
        if used + item.size <= budget:
            used += item.size
            fitted.append(item.image)
            continue
        left_out.append(
            (
                item,
                f"disk budget: needs {format_bytes(item.size)}, "
                f"{format_bytes(budget - used)} of {format_bytes(budget)} left "
                f"after {len(fitted)} higher-ranked image(s)",
            )
        )
    return BudgetResult(budget, tuple(fitted), used, tuple(left_out))

"""Stage 1, wanted images: CachedImage objects that name one image, merged and ranked."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from imagesync.cachedimage import profile_key
from imagesync.config import Config
from imagesync.reference import InvalidReference, parse_reference
from imagesync.sources import source_rank, sources_for
from prefetcher import eligibility, scoring
from prefetcher.model import NodeInfo, Snapshot, WantedImage

if TYPE_CHECKING:
    from prefetcher.planning.demand import DemandIndex


@dataclass
class MergedImage:
    """The CachedImage objects that name one image, merged for planning."""

    image: str
    objects: list[WantedImage]
    score: float
    declared: bool
    source_rank: int  # of its best source in `sourceOrder`
    wanted: bool
    size: int
    registry: str
    invalid: str | None
    new_in_use: bool
    placement_key: str  # images with equal keys fit the same nodes
    by_demand: bool = False  # placed only where its pods are predicted to run

    @property
    def primary(self) -> WantedImage:
        return self.objects[0]

    @property
    def rank(self) -> tuple[int, float, str]:
        return scoring.rank_key(self.image, self.source_rank, self.score)


def registry_of(image: str) -> tuple[str, str | None]:
    """The registry host of `image`, or "" and why the reference is invalid."""
    try:
        return parse_reference(image).domain, None
    except InvalidReference as exc:
        return "", f"invalid image reference: {exc.reason}"


def recent(moment: datetime | None, now: datetime, window: float) -> bool:
    """True when `moment` lies within `window` seconds before `now`."""
    return moment is not None and 0 <= (now - moment).total_seconds() <= window


def size_hints(nodes: tuple[NodeInfo, ...]) -> dict[str, int]:
    """The largest size any node's image list gives for each image."""
    hints: dict[str, int] = {}
    for node in nodes:
        for image, size in node.hinted_images.items():
            hints[image] = max(hints.get(image, 0), size)
    return hints


# A pull unpacks about this many bytes on disk per compressed byte (NGC pytorch: 20.4 GB
# from 9.5 GB); used while the registry's compressed size is all that is known.
DISK_PER_COMPRESSED_BYTE = 2.2


def merge_images(snapshot: Snapshot, config: Config, demand: DemandIndex) -> list[MergedImage]:
    """Group CachedImages by image, leaving out objects whose source does not count for the
    image's prefix (`sources`, `defaultSources`); best rank first."""
    now = snapshot.now
    hints = size_hints(snapshot.nodes)
    groups: dict[str, list[WantedImage]] = {}
    counted: dict[str, tuple[str, ...]] = {}
    for obj in snapshot.images:
        if obj.image not in counted:
            counted[obj.image] = sources_for(
                obj.image, config.sources, config.registries, config.default_sources
            )
        if obj.source in counted[obj.image]:
            groups.setdefault(obj.image, []).append(obj)
    merged = [
        merge_group(image, objects, hints, now, config, demand) for image, objects in groups.items()
    ]
    merged.sort(key=lambda i: i.rank)
    return merged


def merge_group(
    image: str,
    objects: list[WantedImage],
    hints: dict[str, int],
    now: datetime,
    config: Config,
    demand: DemandIndex,
) -> MergedImage:
    """One image from the CachedImages that name it (best source first, then by name).

    A live workload template keeps a learned image wanted and counts as use; an image a
    rollout left behind is released once nothing uses it (`demand.released`)."""
    objects.sort(key=lambda o: (source_rank(o.source, config.source_order), o.name))
    scores = [scoring.score(o, now, config.score_half_life) for o in objects]
    sizes = [o.size for o in objects if o.size]
    compressed = max((o.compressed_size or 0 for o in objects), default=0)
    estimate = int(compressed * DISK_PER_COMPRESSED_BYTE) or config.default_image_size
    registry, invalid = registry_of(image)
    created = [o.created for o in objects if o.created is not None]
    need = demand.of(image)
    templated = need is not None and need.templated
    in_use = templated or any(o.use_count > 0 or o.daily_uses for o in objects)
    declared = any(scoring.is_declared(o) for o in objects)
    # The rank comes from the objects that still want the image (a released learned object
    # must not lift an observed one).
    live = [o for o in objects if scoring.is_wanted(o, now, config.image_retention)]
    wanted = declared or (image not in demand.released and (templated or bool(live)))
    placement = objects[0].placement or config.placement
    return MergedImage(
        image=image,
        objects=objects,
        score=max(scores),
        declared=declared,
        source_rank=min(source_rank(o.source, config.source_order) for o in live or objects),
        wanted=wanted,
        size=max(sizes) if sizes else hints.get(image) or estimate,
        registry=registry,
        invalid=invalid,
        new_in_use=in_use and bool(created) and recent(min(created), now, config.urgent_window),
        placement_key=placement_key(objects, invalid),
        by_demand=placement.lower() == "demand",
    )


def placement_key(objects: list[WantedImage], invalid: str | None) -> str:
    """Everything about the objects that decides which nodes fit them."""
    parts: list[Any] = [invalid]
    for o in objects:
        profiles = sorted(profile_key(p) for p in o.profiles)
        parts.append([sorted(o.node_selector.items()), list(o.architectures), *profiles])
    return json.dumps(parts)


def placement(image: MergedImage, node: NodeInfo, config: Config) -> str | None:
    """Why no object of `image` may run on `node`, or None when one may."""
    if image.invalid:
        return image.invalid
    reasons = [eligibility.placement_problem(o, node, config) for o in image.objects]
    if any(reason is None for reason in reasons):
        return None
    return reasons[0]


def size_on(image: MergedImage, node: NodeInfo) -> int:
    """Bytes `image` takes on `node`: the node's own figure when it lists the image."""
    return node.hinted_images.get(image.image) or image.size

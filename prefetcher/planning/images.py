"""Stage 1, wanted images: CachedImage objects that name one image, merged and ranked."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from imagesync.cachedimage import profile_key
from imagesync.config import Config
from imagesync.reference import InvalidReference, parse_reference
from imagesync.sources import source_rank, sources_for
from prefetcher import eligibility, scoring
from prefetcher.model import NodeInfo, Snapshot, WantedImage

if TYPE_CHECKING:
    from prefetcher.planning.demand import DemandIndex

# A pull unpacks about this many bytes on disk per compressed byte (NGC pytorch: 20.4 GB
# from 9.5 GB); used while the registry's compressed size is all that is known.
DISK_PER_COMPRESSED_BYTE = 2.2


@dataclass(frozen=True)
class ImageFacts:
    """What the CachedImages of one image say, fixed for a UTC day (scores change daily)."""

    image: str
    objects: tuple[WantedImage, ...]  # best source first, then by name
    scores: tuple[float, ...]  # per object, for the day
    ranks: tuple[int, ...]  # per object: its source's place in `sourceOrder`
    last_used: tuple[datetime | None, ...]  # per object; None for a declared one
    declared: bool
    size: int
    registry: str
    invalid: str | None
    placement_key: str
    used: bool  # its objects count uses
    first_created: datetime | None
    by_demand: bool  # placed only where its pods are predicted to run


@dataclass
class MergedImage:
    """The CachedImage objects that name one image, merged for planning."""

    image: str
    objects: tuple[WantedImage, ...]
    scores: tuple[float, ...]  # per object
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


@lru_cache(maxsize=16384)  # pure, and asked for every puller's images on every pass
def registry_of(image: str) -> tuple[str, str | None]:
    """The registry host of `image`, or "" and why the reference is invalid."""
    try:
        return parse_reference(image).domain, None
    except InvalidReference as exc:
        return "", f"invalid image reference: {exc.reason}"


def recent(moment: datetime | None, now: datetime, window: float) -> bool:
    """True when `moment` lies within `window` seconds before `now`, or after it: a kubelet
    whose clock runs ahead of ours stamps a node that just joined in our future, and that
    node must not count as old (nor wait a whole window to count as new)."""
    return moment is not None and (now - moment).total_seconds() <= window


def size_hints(nodes: Iterable[NodeInfo]) -> dict[str, int]:
    """The largest size any node's image list gives for each image."""
    hints: dict[str, int] = {}
    for node in nodes:
        for image, size in node.hinted_images.items():
            hints[image] = max(hints.get(image, 0), size)
    return hints


def group_images(
    images: Iterable[WantedImage],
    config: Config,
    counted: dict[str, tuple[str, ...]] | None = None,
) -> dict[str, list[WantedImage]]:
    """The CachedImages by the image they name, leaving out objects whose source does not
    count for the image's prefix (`sources`, `defaultSources`). `counted` (image → the
    sources that count for it under `config`) may be kept from call to call."""
    groups: dict[str, list[WantedImage]] = {}
    counted = {} if counted is None else counted
    for obj in images:
        if obj.image not in counted:
            counted[obj.image] = sources_for(
                obj.image, config.sources, config.registries, config.default_sources
            )
        if obj.source in counted[obj.image]:
            groups.setdefault(obj.image, []).append(obj)
    return groups


def merge_images(snapshot: Snapshot, config: Config, demand: DemandIndex) -> list[MergedImage]:
    """Group CachedImages by image; best rank first."""
    now = snapshot.now
    hints = size_hints(snapshot.nodes)
    day = scoring.day_start(now)
    merged = [
        merged_image(
            image_facts(image, objects, hints.get(image), day, config), now, config, demand
        )
        for image, objects in group_images(snapshot.images, config).items()
    ]
    return ranked(merged)


def ranked(images: list[MergedImage]) -> list[MergedImage]:
    """`images` in rank order, best first."""
    images.sort(key=lambda i: i.rank)
    return images


def image_facts(
    image: str, objects: list[WantedImage], hint: int | None, day: datetime, config: Config
) -> ImageFacts:
    """The facts of one image from the CachedImages that name it, on `day`."""
    ordered = tuple(
        sorted(objects, key=lambda o: (source_rank(o.source, config.source_order), o.name))
    )
    sizes = [o.size for o in ordered if o.size]
    compressed = max((o.compressed_size or 0 for o in ordered), default=0)
    estimate = int(compressed * DISK_PER_COMPRESSED_BYTE) or config.default_image_size
    registry, invalid = registry_of(image)
    created = [o.created for o in ordered if o.created is not None]
    placed = ordered[0].placement or config.placement
    return ImageFacts(
        image=image,
        objects=ordered,
        scores=tuple(scoring.score(o, day, config.score_half_life) for o in ordered),
        ranks=tuple(source_rank(o.source, config.source_order) for o in ordered),
        last_used=tuple(None if scoring.is_declared(o) else scoring.last_used(o) for o in ordered),
        declared=any(scoring.is_declared(o) for o in ordered),
        size=max(sizes) if sizes else hint or estimate,
        registry=registry,
        invalid=invalid,
        placement_key=placement_key(ordered, invalid),
        used=any(o.use_count > 0 or o.daily_uses for o in ordered),
        first_created=min(created) if created else None,
        by_demand=placed.lower() == "demand",
    )


def merged_image(
    facts: ImageFacts, now: datetime, config: Config, demand: DemandIndex
) -> MergedImage:
    """The image as planned at `now`: a live workload template keeps a learned image wanted
    and counts as use; an image a rollout left behind is released once nothing uses it
    (`demand.released`)."""
    need = demand.of(facts.image)
    templated = need is not None and need.templated
    in_use = templated or facts.used
    # The rank comes from the objects that still want the image (a released learned object
    # must not lift an observed one).
    live = [
        rank
        for obj, rank, used in zip(facts.objects, facts.ranks, facts.last_used, strict=True)
        if scoring.is_declared(obj) or scoring.used_within(used, now, config.image_retention)
    ]
    wanted = facts.declared or (facts.image not in demand.released and (templated or bool(live)))
    return MergedImage(
        image=facts.image,
        objects=facts.objects,
        scores=facts.scores,
        score=max(facts.scores),
        declared=facts.declared,
        source_rank=min(live or facts.ranks),
        wanted=wanted,
        size=facts.size,
        registry=facts.registry,
        invalid=facts.invalid,
        new_in_use=in_use and recent(facts.first_created, now, config.urgent_window),
        placement_key=facts.placement_key,
        by_demand=facts.by_demand,
    )


def placement_key(objects: Iterable[WantedImage], invalid: str | None) -> str:
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

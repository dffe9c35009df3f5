"""Stage 1, wanted images: CachedImage objects that name one image, merged and ranked."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from imagesync.cachedimage import profile_key
from imagesync.config import Config
from imagesync.reference import InvalidReference, parse_reference
from prefetcher import eligibility, scoring
from prefetcher.model import NodeInfo, Snapshot, WantedImage


@dataclass(frozen=True)
class ImageFacts:
    """What the CachedImages of one image say, fixed for a UTC day (scores change daily)."""

    image: str
    objects: tuple[WantedImage, ...]  # declared first, then by name
    scores: tuple[float, ...]  # per object, for the day
    declared: bool
    size: int
    registry: str
    invalid: str | None
    placement_key: str
    last_used: tuple[datetime | None, ...]  # per learned object (declared ones: always wanted)
    in_use_since: datetime | None  # first creation, when in use (for "new image in use")


@dataclass
class MergedImage:
    """The CachedImage objects that name one image, merged for planning."""

    image: str
    objects: tuple[WantedImage, ...]
    scores: tuple[float, ...]  # per object
    score: float
    declared: bool
    wanted: bool
    size: int
    registry: str
    invalid: str | None
    new_in_use: bool
    placement_key: str  # images with equal keys fit the same nodes

    @property
    def primary(self) -> WantedImage:
        return self.objects[0]

    @property
    def rank(self) -> tuple[int, float, str]:
        return scoring.rank_key(self.image, self.declared, self.score)


def registry_of(image: str) -> tuple[str, str | None]:
    """The registry host of `image`, or "" and why the reference is invalid."""
    try:
        return parse_reference(image).domain, None
    except InvalidReference as exc:
        return "", f"invalid image reference: {exc.reason}"


def recent(moment: datetime | None, now: datetime, window: float) -> bool:
    """True when `moment` lies within `window` seconds before `now`."""
    return moment is not None and 0 <= (now - moment).total_seconds() <= window


def size_hints(nodes: Iterable[NodeInfo]) -> dict[str, int]:
    """The largest size any node's image list gives for each image."""
    hints: dict[str, int] = {}
    for node in nodes:
        for image, size in node.hinted_images.items():
            hints[image] = max(hints.get(image, 0), size)
    return hints


def group_images(images: Iterable[WantedImage]) -> dict[str, list[WantedImage]]:
    """The CachedImages by the image they name."""
    groups: dict[str, list[WantedImage]] = {}
    for obj in images:
        groups.setdefault(obj.image, []).append(obj)
    return groups


def merge_images(snapshot: Snapshot, config: Config) -> list[MergedImage]:
    """Group CachedImages by image; best rank first."""
    now = snapshot.now
    hints = size_hints(snapshot.nodes)
    day = scoring.day_start(now)
    merged = [
        merged_image(image_facts(image, objects, hints.get(image), day, config), now, config)
        for image, objects in group_images(snapshot.images).items()
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
    ordered = tuple(sorted(objects, key=lambda o: (not scoring.is_declared(o), o.name)))
    sizes = [o.size for o in ordered if o.size]
    registry, invalid = registry_of(image)
    created = [o.created for o in ordered if o.created is not None]
    in_use = any(o.use_count > 0 or o.daily_uses for o in ordered)
    return ImageFacts(
        image=image,
        objects=ordered,
        scores=tuple(scoring.score(o, day, config.score_half_life) for o in ordered),
        declared=any(scoring.is_declared(o) for o in ordered),
        size=max(sizes) if sizes else hint or config.default_image_size,
        registry=registry,
        invalid=invalid,
        placement_key=placement_key(ordered, invalid),
        last_used=tuple(scoring.last_used(o) for o in ordered if not scoring.is_declared(o)),
        in_use_since=min(created) if in_use and created else None,
    )


def merged_image(facts: ImageFacts, now: datetime, config: Config) -> MergedImage:
    """The image as planned at `now` (wanted, newly in use)."""
    wanted = facts.declared or any(
        scoring.used_within(used, now, config.image_retention) for used in facts.last_used
    )
    return MergedImage(
        image=facts.image,
        objects=facts.objects,
        scores=facts.scores,
        score=max(facts.scores),
        declared=facts.declared,
        wanted=wanted,
        size=facts.size,
        registry=facts.registry,
        invalid=facts.invalid,
        new_in_use=recent(facts.in_use_since, now, config.urgent_window),
        placement_key=facts.placement_key,
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

"""Which Learned images the planner sees: confirmed ones, within the configured bounds.

Pure. A Learned image is planned with the profiles of its confirmed namespaces only (see
confirmation.py); one with none is left out as unconfirmed. Then the bounds: each
namespace admits at most `maxLearnedImagesPerNamespace` of the images used in it, best
score first, and the cluster at most `maxLearnedImages`. An image admitted by one
namespace and not another keeps only the admitting namespaces' profiles, so a namespace
over its bound adds no placement. Declared images are the admin's choice and never count.
Images past their retention pass through untouched: the planner releases them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from imagesync.config import Config
from imagesync.names import SOURCE_LEARNED
from prefetcher.model import WantedImage
from prefetcher.scoring import is_wanted, rank_key, score

UNCONFIRMED = "unconfirmed"
NAMESPACE_LIMIT = "namespace_limit"
TOTAL_LIMIT = "total_limit"
LEFT_OUT_REASONS = (UNCONFIRMED, NAMESPACE_LIMIT, TOTAL_LIMIT)


@dataclass(frozen=True)
class LearnedSelection:
    """What the planner sees, and the learned images left out, by reason."""

    images: tuple[WantedImage, ...]
    left_out: dict[str, tuple[str, ...]]  # reason → images
    full_namespaces: tuple[str, ...] = ()  # namespaces whose bound bit

    def count(self, reason: str) -> int:
        return len(self.left_out.get(reason, ()))


def _confirmed_only(image: WantedImage) -> WantedImage | None:
    profiles = tuple(p for p in image.profiles if p.get("namespace") in image.confirmed_namespaces)
    return dataclasses.replace(image, profiles=profiles) if profiles else None


def select_learned(
    images: Iterable[WantedImage], now: datetime, config: Config
) -> LearnedSelection:
    """The planner's images: every image that is not Learned (declared, and the prefetcher's
    own Observed and Catalog objects), expired ones, and confirmed learned images within
    bounds."""
    passed: list[WantedImage] = []
    candidates: list[tuple[tuple[int, float, str], WantedImage]] = []
    left_out: dict[str, list[str]] = {reason: [] for reason in LEFT_OUT_REASONS}
    for image in images:
        if image.source != SOURCE_LEARNED or not is_wanted(image, now, config.image_retention):
            passed.append(image)
            continue
        confirmed = _confirmed_only(image)
        if confirmed is None:
            left_out[UNCONFIRMED].append(image.image)
            continue
        candidates.append(
            (rank_key(image.image, 0, score(image, now, config.score_half_life)), confirmed)
        )
    candidates.sort(key=lambda pair: pair[0])

    per_namespace: dict[str, int] = {}
    full: set[str] = set()
    admitted: list[WantedImage] = []
    for _, image in candidates:
        namespaces = {str(p.get("namespace")) for p in image.profiles}
        room = {
            ns
            for ns in namespaces
            if per_namespace.get(ns, 0) < config.max_learned_images_per_namespace
        }
        full |= namespaces - room
        if not room:
            left_out[NAMESPACE_LIMIT].append(image.image)
            continue
        if len(admitted) >= config.max_learned_images:
            left_out[TOTAL_LIMIT].append(image.image)
            continue
        for ns in room:
            per_namespace[ns] = per_namespace.get(ns, 0) + 1
        if room != namespaces:
            image = dataclasses.replace(
                image, profiles=tuple(p for p in image.profiles if p.get("namespace") in room)
            )
        admitted.append(image)
    return LearnedSelection(
        images=(*passed, *admitted),
        left_out={reason: tuple(found) for reason, found in left_out.items()},
        full_namespaces=tuple(sorted(full)),
    )

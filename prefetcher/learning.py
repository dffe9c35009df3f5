"""Which CachedImage writes the workload templates call for, so images are known before pods.

Pure. A managed image of a live template with no CachedImage gets a Learned one with the
template's placement profiles; a Learned one that lacks a template's profile gets it merged
in (`merge_profiles`, as the webhook does for pods). Declared objects are left as their
owners wrote them. A converged cluster calls for no write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from imagesync.cachedimage import (
    MAX_PROFILES,
    PlacementProfile,
    merge_profiles,
    new_cached_image,
    object_name,
    profile_key,
)
from imagesync.names import SOURCE_LEARNED
from prefetcher.model import Workload
from prefetcher.observe import normalize_or_keep


@dataclass(frozen=True)
class LearnWrite:
    """Create `body`, or set the profiles of CachedImage `name` (at `resource_version`)."""

    image: str
    name: str
    body: Mapping[str, Any] | None = None
    profiles: tuple[PlacementProfile, ...] = ()
    resource_version: str = ""


def template_profiles(workloads: Iterable[Workload]) -> dict[str, list[PlacementProfile]]:
    """Per image, the distinct profiles of the templates using it (at most MAX_PROFILES)."""
    out: dict[str, dict[str, PlacementProfile]] = {}
    for workload in workloads:
        for image in workload.images:
            for profile in workload.profiles:
                out.setdefault(image, {}).setdefault(profile_key(profile), profile)
    return {
        image: [profiles[key] for key in sorted(profiles)[:MAX_PROFILES]]
        for image, profiles in sorted(out.items())
    }


def learn_writes(
    workloads: Iterable[Workload], cached: Iterable[Mapping[str, Any]], stamp: str
) -> list[LearnWrite]:
    """The writes that make every template's images and profiles known (`stamp`: now, as
    the profiles' lastSeen)."""
    by_image: dict[str, Mapping[str, Any]] = {}
    for obj in cached:
        spec = obj.get("spec") or {}
        by_image.setdefault(normalize_or_keep(str(spec.get("image") or "")), obj)
        by_image.setdefault(str((obj.get("metadata") or {}).get("name") or ""), obj)
    writes: list[LearnWrite] = []
    for image, profiles in template_profiles(workloads).items():
        stamped = [PlacementProfile(**{**p, "lastSeen": stamp}) for p in profiles]
        found = by_image.get(image) or by_image.get(object_name(image))
        if found is None:
            body = new_cached_image(image, merge_profiles([], stamped))
            writes.append(LearnWrite(image, object_name(image), body=body))
            continue
        obj = found
        spec = obj.get("spec") or {}
        if spec.get("source", SOURCE_LEARNED) != SOURCE_LEARNED:
            continue
        stored: list[PlacementProfile] = list(spec.get("profiles") or [])
        merged = merge_profiles(stored, stamped)
        if {profile_key(p) for p in merged} == {profile_key(p) for p in stored}:
            continue  # nothing new (a template's larger pod merges into a smaller one seen)
        meta = obj.get("metadata") or {}
        writes.append(
            LearnWrite(
                image,
                str(meta.get("name") or ""),
                profiles=tuple(merged),
                resource_version=str(meta.get("resourceVersion") or ""),
            )
        )
    return writes

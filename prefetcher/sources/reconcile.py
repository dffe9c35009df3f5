"""From what a source wants to CachedImage writes: create, re-specify, refresh, release.

The prefetcher owns the objects of the Observed and Catalog sources (`observed-...`,
`catalog-...`). Each pass compares what the sources want now with those objects:

- a wanted image without an object is created (with `status.lastSeen` now);
- an object whose profiles differ gets the new ones (a pool gained or lost the image);
- `status.lastSeen` is refreshed at most every `refresh` seconds (a converged cluster does
  not rewrite every object on every pass), other status fields when they change;
- an object no longer wanted is deleted once `release` says so: Observed objects when no
  node has listed the image for `imageRetention`, Catalog objects once their prefix's catalog
  was read without it (never while the registry cannot be read).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from imagesync.cachedimage import format_time, source_object_name
from imagesync.names import API_VERSION, CACHED_IMAGE_KIND, LABEL_MANAGED_BY, MANAGED_BY
from prefetcher.observe import normalize_or_keep, parse_timestamp
from prefetcher.sources.model import SourcedImage

Obj = Mapping[str, Any]
# release(image, last seen) -> delete the object of an image its source no longer wants?
Release = Callable[[str, datetime | None], bool]


@dataclass
class SourceWrites:
    """The API writes that bring one source's objects in line with what it wants."""

    creates: list[dict[str, Any]] = field(default_factory=list)  # bodies
    spec_patches: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # name, spec
    status_patches: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    deletes: list[tuple[str, str]] = field(default_factory=list)  # name, uid

    def __len__(self) -> int:
        return (
            len(self.creates)
            + len(self.spec_patches)
            + len(self.status_patches)
            + len(self.deletes)
        )


def new_object(wanted: SourcedImage) -> dict[str, Any]:
    """The body of the prefetcher's CachedImage for `wanted`."""
    spec: dict[str, Any] = {"image": wanted.image, "source": wanted.source}
    if wanted.profiles:
        spec["profiles"] = [dict(p) for p in wanted.profiles]
    return {
        "apiVersion": API_VERSION,
        "kind": CACHED_IMAGE_KIND,
        "metadata": {
            "name": source_object_name(wanted.image, wanted.source),
            "labels": {LABEL_MANAGED_BY: MANAGED_BY},
        },
        "spec": spec,
    }


def _status_changes(
    wanted: SourcedImage, stored: Mapping[str, Any], now: datetime, refresh: float
) -> dict[str, Any]:
    changes = {k: v for k, v in wanted.status.items() if stored.get(k) != v}
    last_seen = parse_timestamp(stored.get("lastSeen"))
    if last_seen is None or (now - last_seen).total_seconds() >= refresh or changes:
        changes["lastSeen"] = format_time(now)
    return changes


def reconcile(
    source: str,
    wanted: Mapping[str, SourcedImage],
    objects: Iterable[Obj],
    *,
    now: datetime,
    refresh: float,
    release: Release,
) -> SourceWrites:
    """The writes for `source`: `wanted` by image; `objects`: every CachedImage (others'
    included, skipped here)."""
    writes = SourceWrites()
    existing: dict[str, Obj] = {}
    for obj in objects:
        spec = obj.get("spec") or {}
        meta = obj.get("metadata") or {}
        image = normalize_or_keep(str(spec.get("image") or ""))
        if spec.get("source") != source:
            continue
        if meta.get("name") != source_object_name(image, source) or image in existing:
            # Not ours (a person applied it under another name): leave it alone.
            continue
        existing[image] = obj
    for image, item in sorted(wanted.items()):
        if image not in existing:
            body = new_object(item)
            writes.creates.append(body)
            status = dict(item.status)
            status["lastSeen"] = format_time(now)
            writes.status_patches.append((body["metadata"]["name"], status))
            continue
        obj = existing[image]
        name = str(obj["metadata"]["name"])
        profiles = [dict(p) for p in item.profiles]
        if list((obj.get("spec") or {}).get("profiles") or []) != profiles:
            writes.spec_patches.append((name, {"profiles": profiles or None}))
        changes = _status_changes(item, obj.get("status") or {}, now, refresh)
        if changes:
            writes.status_patches.append((name, changes))
    for image, obj in sorted(existing.items()):
        if image in wanted:
            continue
        last_seen = parse_timestamp((obj.get("status") or {}).get("lastSeen"))
        if release(image, last_seen):
            meta = obj["metadata"]
            writes.deletes.append((str(meta["name"]), str(meta.get("uid") or "")))
    return writes

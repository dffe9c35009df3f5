"""One conditional CachedImage write of buffered usage, safe against rival writers, lost answers."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import datetime
from typing import Any

from imagesync.cachedimage import merge_profiles, new_cached_image, object_name
from imagesync.kubeclient import KubeError
from imagesync.names import SOURCE_LEARNED
from imagesync.usage import add_usage, applied_sequence
from webhook.metrics import Metrics
from webhook.pending import InDoubt, PendingImage
from webhook.store import CachedImageStore

CONFLICT_RETRIES = 8


class LostAnswer(Exception):
    """A status write that may have landed (a timeout, a 5xx, a failure mid-call)."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def learned_spec_update(obj: dict[str, Any], pending: PendingImage) -> dict[str, Any] | None:
    """The object with merged profiles, or None when its spec must stay (Declared, unchanged)."""
    spec = obj.get("spec") or {}
    if spec.get("source", SOURCE_LEARNED) != SOURCE_LEARNED:
        return None
    stored = list(spec.get("profiles") or [])
    merged = merge_profiles(stored, pending.profile_list())
    if merged == stored:
        return None
    updated = copy.deepcopy(obj)
    updated.setdefault("spec", {})["profiles"] = merged
    return updated


def _may_have_landed(exc: KubeError) -> bool:
    """A lost answer (timeout, connection drop) or a 5xx: the write may have been applied.
    A 4xx answer means it was not."""
    return exc.status == 0 or exc.status >= 500


def write_image_usage(
    store: CachedImageStore,
    metrics: Metrics,
    image: str,
    entry: PendingImage,
    doubts: list[InDoubt],
    *,
    writer_id: str,
    sequence: int,
    clock: Callable[[], datetime],
) -> str:
    """Create or update one CachedImage; returns "created" or "updated".

    What is sent: `entry`, plus every write in doubt that the object's stamp shows did
    not land. A 409 means another writer was first: read again, merge again.
    """
    name = object_name(image)
    created = False
    for _ in range(CONFLICT_RETRIES):
        obj = store.get(name)
        status = dict((obj or {}).get("status") or {})
        landed = applied_sequence(status, writer_id)
        payload = PendingImage()
        for doubt in doubts:
            if doubt.sequence > landed:
                payload.absorb(doubt.entry)
        payload.absorb(entry)
        if not payload.count:
            return "updated"  # everything in doubt had landed
        if obj is None:
            try:
                obj = store.create(new_cached_image(image, payload.profile_list()))
                created = True
            except KubeError as exc:
                if exc.conflict:  # AlreadyExists: another writer won; update theirs
                    metrics.conflicts.inc()
                    continue
                raise
        try:
            updated = learned_spec_update(obj, payload)
            if updated is not None:
                obj = store.replace(updated)
            body = copy.deepcopy(obj)
            body["status"] = add_usage(
                dict(obj.get("status") or {}),
                uses=payload.count,
                daily=payload.daily,
                last_seen=payload.last_seen,
                writer=writer_id,
                sequence=sequence,
                now=clock(),
            )
        except KubeError as exc:
            if exc.conflict:  # stale resourceVersion: read again, merge again
                metrics.conflicts.inc()
                continue
            raise
        try:
            store.replace_status(body)
        except KubeError as exc:
            if exc.conflict:
                metrics.conflicts.inc()
                continue
            raise LostAnswer(exc) if _may_have_landed(exc) else exc from None
        except Exception as exc:
            raise LostAnswer(exc) from exc
        return "created" if created else "updated"
    raise KubeError(
        f"writing CachedImage {name}: still conflicting after {CONFLICT_RETRIES} tries",
        409,
        "Conflict",
    )

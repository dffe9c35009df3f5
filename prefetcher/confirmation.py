"""Learned images are confirmed by pods the API server stored, not by admission reviews.

The webhook learns from AdmissionReviews, and a review proves nothing: anything that can
reach `/mutate` can send one, and a pod that a later admission step refuses was reviewed
all the same. So a Learned CachedImage names where it was *reviewed*, and the prefetcher
records where it was *used*: a namespace enters `status.confirmedNamespaces` only once the
prefetcher's own watch has shown a pod stored by the API server, in that namespace, bound
to a node, that uses the image (or, at start, a running one). Only profiles of confirmed
namespaces are planned; an image with none is not prefetched.

A pod is often bound before the webhook's CachedImage write lands, so what the watch saw
is remembered for a while (bounded, oldest forgotten first).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

from imagesync.cachedimage import MAX_CONFIRMED_NAMESPACES
from imagesync.matching import RegistryPrefix, pod_images
from imagesync.names import LABEL_MANAGED_BY, MANAGED_BY, SOURCE_LEARNED

# How long a stored pod's (image, namespace) is remembered, waiting for its CachedImage.
REMEMBER_SECONDS = 3600.0
REMEMBER_MAX = 20_000


class StoredPodImages:
    """(image, namespace) pairs seen in stored pods, with when; thread-safe and bounded."""

    def __init__(
        self,
        registries: Iterable[RegistryPrefix],
        *,
        remember: float = REMEMBER_SECONDS,
        capacity: int = REMEMBER_MAX,
    ) -> None:
        self._registries = tuple(registries)
        self._remember = remember
        self._capacity = capacity
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._lock = threading.Lock()

    def observe(self, pod: Mapping[str, Any], now: float) -> bool:
        """Remember the managed images of a pod the API server stored (not one of ours);
        True when it used an image in a namespace not remembered yet."""
        meta = pod.get("metadata")
        if not isinstance(meta, Mapping):
            return False
        labels = meta.get("labels")
        if isinstance(labels, Mapping) and labels.get(LABEL_MANAGED_BY) == MANAGED_BY:
            return False
        namespace = meta.get("namespace")
        if not isinstance(namespace, str) or not namespace:
            return False
        images = pod_images(pod, self._registries)
        new = False
        with self._lock:
            for image in images:
                key = (image, namespace)
                new = self._seen.pop(key, None) is None or new
                self._seen[key] = now
            while len(self._seen) > self._capacity:
                self._seen.popitem(last=False)
        return new

    def namespaces(self, now: float) -> dict[str, set[str]]:
        """image → namespaces it was seen in within the memory window."""
        out: dict[str, set[str]] = {}
        with self._lock:
            while self._seen:
                key, when = next(iter(self._seen.items()))
                if now - when <= self._remember:
                    break
                del self._seen[key]
            for image, namespace in self._seen:
                out.setdefault(image, set()).add(namespace)
        return out

    def __len__(self) -> int:
        with self._lock:
            return len(self._seen)


def confirmed_namespaces(obj: Mapping[str, Any]) -> list[str]:
    status = obj.get("status")
    value = status.get("confirmedNamespaces") if isinstance(status, Mapping) else None
    return [str(ns) for ns in value] if isinstance(value, list) else []


def confirmation_patches(
    objects: Iterable[Mapping[str, Any]], seen: Mapping[str, set[str]], stamp: str
) -> list[tuple[str, dict[str, Any]]]:
    """Status patches (object name, patch) that add newly confirmed namespaces."""
    patches: list[tuple[str, dict[str, Any]]] = []
    for obj in objects:
        spec = obj.get("spec")
        if not isinstance(spec, Mapping) or spec.get("source", SOURCE_LEARNED) != SOURCE_LEARNED:
            continue
        new = seen.get(str(spec.get("image") or ""))
        if not new:
            continue
        known = confirmed_namespaces(obj)
        added = sorted(new - set(known))
        if not added or len(known) >= MAX_CONFIRMED_NAMESPACES:
            continue
        patch: dict[str, Any] = {"confirmedNamespaces": [*known, *added][:MAX_CONFIRMED_NAMESPACES]}
        status = obj.get("status")
        if not (isinstance(status, Mapping) and status.get("confirmedAt")):
            patch["confirmedAt"] = stamp
        patches.append((str((obj.get("metadata") or {}).get("name") or ""), patch))
    return patches

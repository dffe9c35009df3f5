"""The CachedImage object: what the webhook learns and the prefetcher reads, as typed data.

A CachedImage says "this image is wanted" and, for learned images, *where* it will be
wanted: one placement profile per distinct way pods that used it were constrained
(nodeSelector, required node affinity, tolerations, GPU request) with the smallest resource
requests seen among those pods. The prefetcher treats a node as eligible when any profile
could have been scheduled there.

    apiVersion: image-sync.io/v1alpha1
    kind: CachedImage
    metadata: {name: nvcr.io-nvidia-pytorch-24.08-py3-3f2a9c1e0b}
    spec:
      image: nvcr.io/nvidia/pytorch:24.08-py3      # normalized reference
      source: Learned        # Declared (by a user), Observed, Catalog (by the prefetcher)
      nodeSelector: {nvidia.com/gpu.present: "true"}  # optional, Declared images
      placement: Demand                             # optional: All | Demand (config default)
      profiles:                                     # Learned: where pods that used it could run
      - nodeSelector: {...}
        requiredNodeAffinity: [ {matchExpressions: [...]} ]   # nodeSelectorTerms (ORed)
        tolerations: [ {...} ]
        gpu: true
        requests: {cpu: "32", memory: 256Gi, nvidia.com/gpu: "8"}   # effective, per pod
        namespace: training
        ownerKind: Job
        lastSeen: "2026-11-22T10:00:00Z"
    status:                      # webhook: lastSeen, useCount, dailyUses; prefetcher: the rest
      lastSeen: "2026-11-22T10:00:00Z"
      useCount: 1234
      dailyUses: {"2026-11-22": 40, "2026-11-21": 12}
      score: 17.2
      nodesWanted: 2
      nodesPresent: 2
      lastError: ""
      compressedSize: 9500000000   # from the registry: Catalog, and any image under a
      platforms: [linux/amd64]     # `sources` prefix when registrySizeLookup is on
      digest: sha256:...
      confirmedNamespaces: [training]           # prefetcher: namespaces where a stored
      confirmedAt: "2026-11-22T10:00:05Z"       #   pod used it (Learned images only)
      learnerWrites: {webhook-7d9-12-a1b2c3: {sequence: 41, at: "..."}}  # see usage.py

Observed and Catalog objects are the prefetcher's own: it names them `observed-...` and
`catalog-...` (`source_object_name`) so they never collide with the webhook's object for the
same image, and deletes them when their source no longer lists the image.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, NotRequired, TypedDict

from imagesync.names import (
    API_VERSION,
    CACHED_IMAGE_KIND,
    GPU_RESOURCE,
    SOURCE_CATALOG,
    SOURCE_LEARNED,
    SOURCE_OBSERVED,
)
from imagesync.resources import Requests, pod_requests, smaller_requests

MAX_PROFILES = 16
# Namespaces a Learned image is confirmed in, at most (the CRD's maxItems); no more are added.
MAX_CONFIRMED_NAMESPACES = 64
DAILY_USES_DAYS = 30
_NAME_CHARS = re.compile(r"[^a-z0-9.-]+")


class Toleration(TypedDict, total=False):
    key: str
    operator: str
    value: str
    effect: str
    tolerationSeconds: int


class PlacementProfile(TypedDict):
    """Where one kind of pod that used the image could be scheduled."""

    nodeSelector: dict[str, str]
    requiredNodeAffinity: list[dict[str, Any]]
    tolerations: list[Toleration]
    gpu: bool
    namespace: str
    ownerKind: str
    lastSeen: NotRequired[str]
    # The pods' effective requests (`imagesync.resources`); absent in profiles written before
    # requests were learned and in the prefetcher's own: unknown, any node fits.
    requests: NotRequired[Requests]


class CachedImageSpec(TypedDict):
    image: str
    source: str
    nodeSelector: NotRequired[dict[str, str]]
    profiles: NotRequired[list[PlacementProfile]]
    placement: NotRequired[str]


class CachedImageStatus(TypedDict, total=False):
    lastSeen: str
    useCount: int
    dailyUses: dict[str, int]
    score: float
    nodesWanted: int
    nodesPresent: int
    lastError: str
    nodesReporting: int
    digest: str
    compressedSize: int
    platforms: list[str]
    imageCreated: str
    confirmedNamespaces: list[str]
    confirmedAt: str
    learnerWrites: dict[str, dict[str, Any]]


def object_name(image: str) -> str:
    """A stable, valid object name for a normalized image: readable part + hash.

    Every webhook replica derives the same name, so concurrent learners meet on one object.
    """
    digest = hashlib.sha256(image.encode()).hexdigest()[:10]
    readable = _NAME_CHARS.sub("-", image.lower().replace("/", "-").replace(":", "-"))
    readable = readable.replace("@", "-").strip("-.")[:50].strip("-.")
    return f"{readable}-{digest}" if readable else f"image-{digest}"


def source_object_name(image: str, source: str) -> str:
    """The name of the prefetcher's object for `image` from `source` (Observed, Catalog);
    Learned and Declared images keep `object_name`."""
    if source in (SOURCE_OBSERVED, SOURCE_CATALOG):
        return f"{source.lower()}-{object_name(image)}"
    return object_name(image)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, as Kubernetes writes timestamps."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def requests_gpu(pod_spec: Mapping[str, Any]) -> bool:
    """True when any container asks for `nvidia.com/gpu` (limits imply requests for GPUs)."""
    containers = [*(pod_spec.get("containers") or []), *(pod_spec.get("initContainers") or [])]
    for container in containers:
        resources = container.get("resources") or {}
        for section in ("limits", "requests"):
            amount = (resources.get(section) or {}).get(GPU_RESOURCE)
            if amount not in (None, 0, "0"):
                return True
    return False


def profile_from_pod(pod: Mapping[str, Any], namespace: str) -> PlacementProfile:
    """The placement profile of a pod (a Pod object or a pod template's `{metadata, spec}`)."""
    spec = pod.get("spec") or {}
    affinity = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    owners = (pod.get("metadata") or {}).get("ownerReferences") or []
    controller = next((o for o in owners if o.get("controller")), owners[0] if owners else None)
    return PlacementProfile(
        nodeSelector=dict(spec.get("nodeSelector") or {}),
        requiredNodeAffinity=list(affinity.get("nodeSelectorTerms") or []),
        tolerations=[Toleration(**t) for t in spec.get("tolerations") or []],  # type: ignore[typeddict-item]
        gpu=requests_gpu(spec),
        namespace=namespace,
        ownerKind=str(controller.get("kind", "")) if controller else "",
        requests=pod_requests(spec),
    )


def profile_key(profile: PlacementProfile) -> str:
    """Identity of a profile: everything but when it was last seen."""
    return json.dumps({k: v for k, v in profile.items() if k != "lastSeen"}, sort_keys=True)


def placement_identity(profile: PlacementProfile) -> str:
    """Where a profile's pods may go, leaving out how large they are: profiles that differ
    only in requests merge."""
    return json.dumps(
        {k: v for k, v in profile.items() if k not in ("lastSeen", "requests")}, sort_keys=True
    )


def merged_requests(first: Requests | None, second: Requests | None) -> Requests | None:
    """The requests of two merged profiles: the smaller per resource; unknown (None, a
    profile written before requests were learned) gives way to known."""
    if first is None:
        return second
    if second is None:
        return first
    return smaller_requests(first, second)


def planning_spec(spec: Any) -> Any:
    """A CachedImage spec as planning sees it: its profiles by identity, without when each was
    last seen. The webhook refreshes `lastSeen` on every flush; that changes no plan until the
    retention runs out, which the periodic sweep notices, so it need not trigger a pass."""
    if not isinstance(spec, Mapping) or not isinstance(spec.get("profiles"), list):
        return spec
    profiles = sorted(
        json.dumps({k: v for k, v in p.items() if k != "lastSeen"}, sort_keys=True)
        if isinstance(p, Mapping)
        else repr(p)
        for p in spec["profiles"]
    )
    return {**spec, "profiles": profiles}


def merge_profiles(
    existing: Iterable[PlacementProfile],
    seen: Iterable[PlacementProfile],
    limit: int = MAX_PROFILES,
) -> list[PlacementProfile]:
    """Union by placement keeping the newest `lastSeen` and the smaller requests (a node
    that fits the smallest pod may get the image); the `limit` most recent survive."""
    merged: dict[str, PlacementProfile] = {}
    for profile in [*existing, *seen]:
        key = placement_identity(profile)
        current = merged.get(key)
        if current is None:
            merged[key] = profile
            continue
        newer = profile if profile.get("lastSeen", "") > current.get("lastSeen", "") else current
        requests = merged_requests(current.get("requests"), profile.get("requests"))
        if requests == newer.get("requests"):
            merged[key] = newer
            continue
        combined = newer.copy()
        if requests is None:
            combined.pop("requests", None)
        else:
            combined["requests"] = requests
        merged[key] = combined
    ordered = sorted(merged.values(), key=lambda p: (p.get("lastSeen", ""), profile_key(p)))
    return ordered[-limit:]


def merge_daily_uses(
    existing: Mapping[str, int], added: Mapping[str, int], today: datetime
) -> dict[str, int]:
    """Add per-day use counts and drop days older than DAILY_USES_DAYS."""
    cutoff = (today - timedelta(days=DAILY_USES_DAYS)).strftime("%Y-%m-%d")
    out = {day: int(n) for day, n in existing.items() if day >= cutoff}
    for day, n in added.items():
        if day >= cutoff:
            out[day] = out.get(day, 0) + int(n)
    return dict(sorted(out.items()))


def new_cached_image(image: str, profiles: list[PlacementProfile]) -> dict[str, Any]:
    """The body of a Learned CachedImage as the webhook creates it."""
    return {
        "apiVersion": API_VERSION,
        "kind": CACHED_IMAGE_KIND,
        "metadata": {"name": object_name(image)},
        "spec": CachedImageSpec(image=image, source=SOURCE_LEARNED, profiles=profiles),
    }

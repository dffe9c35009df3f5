"""Reading the cluster: API objects (plain dicts) into the model. What our pods prove is
in `presence`. `node.status.images` lists at most 50 images and lags; it is read only as a
size / disk-use hint.

The converters take the JSON form of objects (as the API returns it, or
`ApiClient().sanitize_for_serialization(model)`); timestamps may be RFC 3339 strings or
datetimes.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

from kubernetes.utils.quantity import parse_quantity as kube_quantity

from imagesync.cachedimage import PlacementProfile
from imagesync.names import (
    ANNOTATION_ATTEMPT,
    ANNOTATION_IMAGE,
    ANNOTATION_IMAGE_FS_CAPACITY,
    ANNOTATION_IMAGES,
    ANNOTATION_NODE,
    COMPONENT_KEEPER,
    COMPONENT_PULLER,
    GPU_RESOURCE,
    LABEL_ARCH,
    LABEL_COMPONENT,
    LABEL_MANAGED_BY,
    LABEL_OS,
    MANAGED_BY,
)
from imagesync.reference import InvalidReference, normalize, parse_reference
from prefetcher.model import (
    ContainerObservation,
    ContainerStateKind,
    ManagedPod,
    NodeInfo,
    ReportedStatus,
    Role,
    StartingPod,
    Taint,
    WantedImage,
)

# Larger than any disk or count a node reports; a value past it is a typo or an attack.
QUANTITY_MAX = 2.0**63


def parse_quantity(value: Any) -> float | None:
    """A Kubernetes quantity (`100Gi`, `2`, `1500m`, `1e9`) as a number; None if unreadable or
    out of any sane range (`1e400`), so one odd annotation never breaks a pass."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(kube_quantity(str(value).strip()))
    except (ValueError, ArithmeticError):
        return None
    return number if math.isfinite(number) and abs(number) < QUANTITY_MAX else None


def parse_timestamp(value: Any) -> datetime | None:
    """RFC 3339 text or a datetime, as an aware UTC datetime; None when absent or unreadable."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return _parse_text_timestamp(str(value))


@functools.lru_cache(maxsize=4096)
def _parse_text_timestamp(text: str) -> datetime | None:
    # Timestamps have a resolution of a second: thousands of containers share each one,
    # and so share its datetime (parsed once).
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@functools.lru_cache(maxsize=16384)
def normalize_or_keep(image: str) -> str:
    """The normalized reference, or the text unchanged when it is not a valid reference.

    Remembered: a fleet names a few hundred images in hundreds of thousands of places (node
    status, pullers, keepers), and each is then parsed once and held as one string."""
    try:
        return sys.intern(normalize(image))
    except InvalidReference:
        return image


# How many distinct image lists and sets the converters share (each remembered one is kept
# alive: a keeper's list of 200 images is 10 kB of text and an 8 kB set).
SHARED_FORMS = 256


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


# --------------------------------------------------------------------------------------
# Nodes
# --------------------------------------------------------------------------------------


def node_info(obj: Mapping[str, Any]) -> NodeInfo:
    """A Node object as NodeInfo."""
    meta, spec, status = (_mapping(obj.get(k)) for k in ("metadata", "spec", "status"))
    labels = {str(k): str(v) for k, v in _mapping(meta.get("labels")).items()}
    annotations = _mapping(meta.get("annotations"))
    conditions = {
        str(c.get("type")): c for c in _list(status.get("conditions")) if isinstance(c, Mapping)
    }
    ready_condition = _mapping(conditions.get("Ready"))
    ready = ready_condition.get("status") == "True"
    node_system = _mapping(status.get("nodeInfo"))
    capacity = _mapping(status.get("capacity"))
    allocatable = _mapping(status.get("allocatable"))

    fs_capacity = parse_quantity(annotations.get(ANNOTATION_IMAGE_FS_CAPACITY))
    if fs_capacity is None:
        fs_capacity = parse_quantity(capacity.get("ephemeral-storage"))
    gpus = parse_quantity(allocatable.get(GPU_RESOURCE, capacity.get(GPU_RESOURCE)))
    allocatable_amounts = {
        str(name): amount
        for name, value in (allocatable or capacity).items()
        if (amount := parse_quantity(value)) is not None
    }

    listed = status.get(LISTED_IMAGES)
    hinted, images_listed = (
        listed if isinstance(listed, ListedImages) else listed_images(status.get("images"))
    )

    taints = tuple(
        Taint(
            key=str(t.get("key", "")),
            value=str(t.get("value") or ""),
            effect=str(t.get("effect") or ""),
        )
        for t in _list(spec.get("taints"))
        if isinstance(t, Mapping)
    )
    return NodeInfo(
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid") or ""),
        labels=labels,
        taints=taints,
        ready=ready,
        unschedulable=bool(spec.get("unschedulable")),
        disk_pressure=_mapping(conditions.get("DiskPressure")).get("status") == "True",
        arch=labels.get(LABEL_ARCH) or str(node_system.get("architecture") or ""),
        os=labels.get(LABEL_OS) or str(node_system.get("operatingSystem") or ""),
        gpu_allocatable=int(gpus or 0),
        allocatable=allocatable_amounts,
        image_fs_capacity=int(fs_capacity) if fs_capacity else None,
        hinted_images=hinted,
        images_listed=images_listed,
        created=parse_timestamp(meta.get("creationTimestamp")),
        ready_since=parse_timestamp(ready_condition.get("lastTransitionTime")) if ready else None,
    )


class ListedImages(NamedTuple):
    """`node.status.images` as the planner reads it: sizes by normalized name, and how many
    entries the kubelet listed (it stops at nodeStatusMaxImages)."""

    sizes: Mapping[str, int]
    entries: int


def listed_images(images: Any) -> ListedImages:
    """A node's `status.images` read: digests left out, names normalized."""
    sizes: dict[str, int] = {}
    entries = _list(images)
    for entry in entries:
        size = int(parse_quantity(_mapping(entry).get("sizeBytes")) or 0)
        for name in _list(_mapping(entry).get("names")):
            if isinstance(name, str) and "@" not in name:
                sizes[normalize_or_keep(name)] = size
    return ListedImages(sizes, len(entries))


# Where the slim form of a Node keeps its image list, read once (`ListedImages`).
LISTED_IMAGES = "listedImages"
# --------------------------------------------------------------------------------------
# CachedImages
# --------------------------------------------------------------------------------------


def wanted_image(obj: Mapping[str, Any]) -> WantedImage:
    """A CachedImage object as WantedImage (an invalid spec.image is kept as written)."""
    meta, spec, status = (_mapping(obj.get(k)) for k in ("metadata", "spec", "status"))
    daily = {
        str(day): int(n)
        for day, n in _mapping(status.get("dailyUses")).items()
        if isinstance(n, int | float) and not isinstance(n, bool)
    }
    profiles: list[PlacementProfile] = []
    for raw in _list(spec.get("profiles")):
        if not isinstance(raw, Mapping):
            continue
        profile = PlacementProfile(
            nodeSelector={str(k): str(v) for k, v in _mapping(raw.get("nodeSelector")).items()},
            requiredNodeAffinity=[t for t in _list(raw.get("requiredNodeAffinity")) if t],
            tolerations=[dict(t) for t in _list(raw.get("tolerations")) if isinstance(t, Mapping)],  # type: ignore[misc]
            gpu=bool(raw.get("gpu")),
            namespace=str(raw.get("namespace") or ""),
            ownerKind=str(raw.get("ownerKind") or ""),
        )
        if raw.get("lastSeen"):
            profile["lastSeen"] = str(raw["lastSeen"])
        requests = raw.get("requests")
        if isinstance(requests, Mapping):
            profile["requests"] = {str(k): str(v) for k, v in requests.items()}
        profiles.append(profile)

    def number(key: str) -> float | None:
        value = status.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return None

    nodes_wanted, nodes_present = number("nodesWanted"), number("nodesPresent")
    last_error = status.get("lastError")
    compressed = number("compressedSize")
    # Platforms as the registry lists them (`linux/amd64`, `linux/arm64/v8`): their archs.
    architectures = sorted(
        {
            parts[1]
            for parts in (str(p).split("/") for p in _list(status.get("platforms")))
            if len(parts) >= 2 and parts[0] == "linux"
        }
    )
    return WantedImage(
        name=str(meta.get("name", "")),
        image=normalize_or_keep(str(spec.get("image", ""))),
        uid=str(meta.get("uid") or ""),
        source=str(spec.get("source") or "Learned"),
        node_selector={str(k): str(v) for k, v in _mapping(spec.get("nodeSelector")).items()},
        profiles=tuple(profiles),
        last_seen=parse_timestamp(status.get("lastSeen")),
        use_count=int(number("useCount") or 0),
        daily_uses=daily,
        created=parse_timestamp(meta.get("creationTimestamp")),
        compressed_size=int(compressed) if compressed else None,
        architectures=tuple(architectures),
        placement=str(spec.get("placement") or ""),
        reported=ReportedStatus(
            score=number("score"),
            nodes_wanted=None if nodes_wanted is None else int(nodes_wanted),
            nodes_present=None if nodes_present is None else int(nodes_present),
            last_error=None if last_error is None else str(last_error),
        ),
        confirmed_namespaces=frozenset(
            str(ns) for ns in _list(status.get("confirmedNamespaces")) if isinstance(ns, str)
        ),
    )


# --------------------------------------------------------------------------------------
# Managed pods
# --------------------------------------------------------------------------------------


def _container_state(status: Mapping[str, Any]) -> tuple[ContainerStateKind, Mapping[str, Any]]:
    state = _mapping(status.get("state"))
    kinds: tuple[ContainerStateKind, ...] = ("running", "terminated", "waiting")
    for kind in kinds:
        if state.get(kind) is not None:
            return kind, _mapping(state.get(kind))
    return "unknown", {}


def managed_pod(obj: Mapping[str, Any]) -> ManagedPod | None:
    """A puller or keeper pod as ManagedPod; None for any other pod. Reads the API's form
    and the informer's form (`cacheforms.slim_managed_pod`) alike."""
    meta, spec, status = (_mapping(obj.get(k)) for k in ("metadata", "spec", "status"))
    labels = _mapping(meta.get("labels"))
    annotations = _mapping(meta.get("annotations"))
    component = labels.get(LABEL_COMPONENT)
    if labels.get(LABEL_MANAGED_BY) != MANAGED_BY or component not in (
        COMPONENT_PULLER,
        COMPONENT_KEEPER,
    ):
        return None
    role: Role = "puller" if component == COMPONENT_PULLER else "keeper"
    read = status.get(OBSERVED)
    seen = read if isinstance(read, ContainersSeen) else containers_seen(spec, status, role)
    images = _listed_images(str(annotations.get(ANNOTATION_IMAGES, "[]")), role == "keeper")
    if role == "puller" and not images and annotations.get(ANNOTATION_IMAGE):
        images = (normalize_or_keep(str(annotations[ANNOTATION_IMAGE])),)
    if role == "puller" and not images:
        images = seen.spec_images  # a puller of an earlier version names no images
    deadline = spec.get("activeDeadlineSeconds")
    attempt = str(annotations.get(ANNOTATION_ATTEMPT, ""))
    return ManagedPod(
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid") or ""),
        node=str(annotations.get(ANNOTATION_NODE) or spec.get("nodeName") or ""),
        role=role,
        images=images,
        phase=str(status.get("phase") or "Pending"),
        reason=str(status.get("reason") or ""),
        message=str(status.get("message") or ""),
        containers=seen.containers,
        created=parse_timestamp(meta.get("creationTimestamp")),
        deleting=meta.get("deletionTimestamp") is not None,
        active_deadline=int(deadline) if isinstance(deadline, int) else None,
        attempt=int(attempt) if attempt.isdigit() else 0,
        running=seen.running,
    )


@functools.lru_cache(maxsize=SHARED_FORMS)
def _listed_images(text: str, keeper: bool) -> tuple[str, ...]:
    """The images an `image-sync.io/images` annotation lists: a puller's in its pull order,
    a keeper's sorted. Remembered: a thousand keepers list the same two hundred images, and
    share one tuple."""
    try:
        listed = json.loads(text)
    except ValueError:
        listed = []
    if not isinstance(listed, list):
        listed = []
    images = tuple(dict.fromkeys(normalize_or_keep(str(i)) for i in listed if i))
    return tuple(sorted(images)) if keeper else images


@functools.lru_cache(maxsize=SHARED_FORMS)
def image_set(images: tuple[str, ...]) -> frozenset[str]:
    """One frozenset for every pod that holds the same images (a keeper's 200 images take 8
    kB as a set; a thousand keepers, and the pullers of the same batch, share one)."""
    return frozenset(images)


class ContainersSeen(NamedTuple):
    """What the statuses and the spec of a managed pod's containers say, read once."""

    containers: tuple[ContainerObservation, ...]  # keepers: all but the running ones
    running: frozenset[str]  # keepers: the images of the running containers
    spec_images: tuple[str, ...]  # the images of the (non-init) containers of the spec


def containers_seen(
    spec: Mapping[str, Any], status: Mapping[str, Any], role: Role
) -> ContainersSeen:
    """A managed pod's container statuses as observations. A keeper's running containers are
    only the set of their images: all a running keeper container says is that its image is
    held (a thousand keepers of two hundred images: a set each, not 200,000 observations)."""
    spec_images: dict[tuple[bool, str], str] = {}
    for init, key in ((True, "initContainers"), (False, "containers")):
        for container in _list(spec.get(key)):
            container = _mapping(container)
            spec_images[(init, str(container.get("name", "")))] = normalize_or_keep(
                str(container.get("image", ""))
            )
    observations = []
    running: list[str] = []
    for init, key in ((True, "initContainerStatuses"), (False, "containerStatuses")):
        for raw in _list(status.get(key)):
            raw = _mapping(raw)
            name = str(raw.get("name", ""))
            image = spec_images.get((init, name))
            if image is None:
                image = normalize_or_keep(str(raw.get("image", "")))
            kind, detail = _container_state(raw)
            if role == "keeper" and not init and kind == "running":
                running.append(image)
                continue
            exit_code = detail.get("exitCode")
            observations.append(
                ContainerObservation(
                    name=sys.intern(name),
                    image=image,
                    state=kind,
                    reason=sys.intern(str(detail.get("reason") or "")),
                    message=str(detail.get("message") or ""),
                    exit_code=int(exit_code) if isinstance(exit_code, int) else None,
                    started_at=parse_timestamp(detail.get("startedAt")),
                    finished_at=parse_timestamp(detail.get("finishedAt")),
                    init=init,
                )
            )
    main = tuple(image for (init, _), image in spec_images.items() if not init)
    return ContainersSeen(
        tuple(observations), image_set(tuple(sorted(set(running)))), _shared_images(main)
    )


@functools.lru_cache(maxsize=SHARED_FORMS)
def _shared_images(images: tuple[str, ...]) -> tuple[str, ...]:
    """One tuple for every pod whose containers use the same images."""
    return images


# Where the slim form of a managed pod keeps its containers, read once (`ContainersSeen`).
OBSERVED = "observed"
# Waiting reasons of a container that is on its way to start (pulling included).
STARTING_REASONS = frozenset({"", "ContainerCreating", "PodInitializing"})


def starting_pod(obj: Mapping[str, Any]) -> StartingPod | None:
    """A workload pod bound to a node and still starting, or None.

    A Pending pod whose containers all wait to be created (the kubelet may be pulling their
    images) counts; one stuck on an error (ErrImagePull, CrashLoopBackOff, a missing
    ConfigMap, ...) does not, nor does one of ours: a broken pod must not hold back a node's
    prefetching for ever.
    """
    meta, spec, status = (_mapping(obj.get(k)) for k in ("metadata", "spec", "status"))
    node = str(spec.get("nodeName") or "")
    if (
        not node
        or status.get("phase", "Pending") != "Pending"
        or meta.get("deletionTimestamp") is not None
        or _mapping(meta.get("labels")).get(LABEL_MANAGED_BY) == MANAGED_BY
    ):
        return None
    started: set[str] = set()  # containers past their image pull
    for key in ("initContainerStatuses", "containerStatuses"):
        for raw in _list(status.get(key)):
            raw = _mapping(raw)
            kind, detail = _container_state(raw)
            if kind == "waiting" and str(detail.get("reason") or "") not in STARTING_REASONS:
                return None
            if kind in ("running", "terminated"):
                started.add(str(raw.get("name") or ""))
    registries: set[str] = set()
    images: dict[str, None] = {}
    for key in ("initContainers", "containers"):
        for container in _list(spec.get(key)):
            container = _mapping(container)
            if str(container.get("name") or "") in started:
                continue
            try:
                reference = parse_reference(str(container.get("image") or ""))
            except InvalidReference:
                continue
            registries.add(reference.domain)
            images.setdefault(reference.normalized(), None)
    since = parse_timestamp(meta.get("creationTimestamp"))
    for condition in _list(status.get("conditions")):
        condition = _mapping(condition)
        if condition.get("type") == "PodScheduled" and condition.get("status") == "True":
            since = parse_timestamp(condition.get("lastTransitionTime")) or since
    return StartingPod(
        node=node,
        pod=f"{meta.get('namespace', '')}/{meta.get('name', '')}",
        since=since,
        registries=tuple(sorted(registries)),
        images=tuple(images),
    )

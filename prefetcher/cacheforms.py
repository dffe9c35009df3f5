"""What the informer caches keep of Nodes and of our pods: the form the planner reads, once.

A thousand nodes converging keep a thousand Nodes and twenty thousand finished pullers of
ten containers each (until their keepers hold the images). As the API sends them, a Node
is 40 kB and a puller 10 kB; the cache then made a second form of each for the planner
(NodeInfo, ManagedPod). Here the cache keeps what the converters, the triggers and the
executor read, with the image list and the containers already read
(`observe.ListedImages`, `observe.ContainersSeen`), which the converted objects share:
6 kB a Node with its NodeInfo, under 3 kB a finished puller with its ManagedPod. Strings
and label sets that repeat from object to object are one object.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from imagesync.names import COMPONENT_KEEPER, LABEL_COMPONENT
from prefetcher.model import Role
from prefetcher.observe import (
    LISTED_IMAGES,
    OBSERVED,
    containers_seen,
    listed_images,
)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


# What `node_info`, the triggers and the taint removal read of a Node's status.
_NODE_CONDITION_FIELDS = ("type", "status", "lastTransitionTime")
_NODE_SYSTEM_FIELDS = ("architecture", "operatingSystem")


def slim_node(obj: dict[str, Any]) -> dict[str, Any]:
    """What the informer keeps of a Node: its metadata (no managedFields) and spec, and of its
    status the conditions' states, capacity, allocatable, its platform, and its image list
    already read (`ListedImages`, under `status.listedImages`: the NodeInfo made of it shares
    it). As the API sends it a Node took 40 kB (50 listed images of several names each,
    digests included, heartbeats, addresses); kept so, 6 kB with its NodeInfo."""
    meta, spec, status = (_mapping(obj.get(k)) for k in ("metadata", "spec", "status"))
    return {
        "metadata": {k: v for k, v in meta.items() if k != "managedFields"},
        "spec": dict(spec),
        "status": {
            "conditions": [
                {k: c[k] for k in _NODE_CONDITION_FIELDS if k in c}
                for c in map(_mapping, _list(status.get("conditions")))
            ],
            "nodeInfo": {
                k: v
                for k, v in _mapping(status.get("nodeInfo")).items()
                if k in _NODE_SYSTEM_FIELDS
            },
            "capacity": dict(_mapping(status.get("capacity"))),
            "allocatable": dict(_mapping(status.get("allocatable"))),
            LISTED_IMAGES: listed_images(status.get("images")),
        },
    }


def slim_managed_pod(obj: dict[str, Any]) -> dict[str, Any]:
    """What the informer keeps of a puller or keeper: the fields `managed_pod`, the
    triggers and the executor read, with the containers already read (`ContainersSeen`,
    under `status.observed`) instead of their specs and statuses. A thousand nodes converging
    keep twenty thousand finished pullers of ten containers each until their keepers hold
    the images: as API dicts, 10 kB each; read once, under 2 kB, and the ManagedPod made of
    it shares its observations. No owner references (nothing reads them), and the strings
    that repeat from pod to pod (node names, image lists) shared."""
    meta, spec, status = (_mapping(obj.get(k)) for k in ("metadata", "spec", "status"))
    labels = _mapping(meta.get("labels"))
    role: Role = "keeper" if labels.get(LABEL_COMPONENT) == COMPONENT_KEEPER else "puller"
    kept_meta = {
        k: meta[k]
        for k in (
            "name",
            "namespace",
            "uid",
            "resourceVersion",
            "labels",
            "annotations",
            "creationTimestamp",
            "deletionTimestamp",
        )
        if k in meta
    }
    if isinstance(meta.get("labels"), Mapping):
        kept_meta["labels"] = _shared_labels(tuple((k, _shared(v)) for k, v in labels.items()))
    if isinstance(meta.get("annotations"), Mapping):
        kept_meta["annotations"] = {k: _shared(v) for k, v in meta["annotations"].items()}
    return {
        "metadata": kept_meta,
        "spec": {k: _shared(spec[k]) for k in ("nodeName", "activeDeadlineSeconds") if k in spec},
        "status": {
            **{k: status[k] for k in ("phase", "reason", "message") if k in status},
            OBSERVED: containers_seen(spec, status, role),
        },
    }


@functools.lru_cache(maxsize=4096)
def _shared_labels(items: tuple[tuple[str, Any], ...]) -> Mapping[str, Any]:
    """One labels mapping for every pod of ours on a node (they carry the same labels);
    read-only."""
    return MappingProxyType(dict(items))


def _shared(value: Any) -> Any:
    """A string as the one copy every cached pod shares (a thousand keepers name the same
    images, nodes and phases); anything else as it is."""
    return sys.intern(value) if isinstance(value, str) else value

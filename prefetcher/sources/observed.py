"""The Observed source: an image some nodes hold is wanted on every node of their pools.

A node's pool is the values of `nodePoolLabels` on it (by default architecture, GPU presence
and instance type). An image that `node.status.images` lists on a node of a pool becomes a
placement profile that matches exactly that pool: `In` for each pool label the node has,
`DoesNotExist` for each it lacks, so CPU nodes never pull an image only GPU nodes hold. The
profile tolerates every taint: the pool's nodes already run pods that use it.

Images a node holds only because image-sync put them there (its keeper guards them, or its
puller pulled them) do not count: otherwise every prefetched image would keep itself wanted
for ever, and a learned image pinned to a few nodes would spread to their whole pools. An
Observed image thus lives while something else keeps it on some node (a workload, an admin's
pre-pull), and `imageRetention` after that.

`node.status.images` is capped by the kubelet (`nodeStatusMaxImages`, 50 by default, largest
first): a node at the cap may hold more than it lists, which `nodes_at_cap` tells.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from imagesync.cachedimage import MAX_PROFILES, PlacementProfile, Toleration
from imagesync.matching import RegistryPrefix, is_managed
from imagesync.names import SOURCE_OBSERVED
from imagesync.sources import SourceRule, sources_for
from prefetcher.model import NodeInfo
from prefetcher.sources.model import SourcedImage

# The kubelet's default nodeStatusMaxImages.
KUBELET_IMAGE_LIST_CAP = 50
POOL_OWNER_KIND = "NodePool"

Pool = tuple[tuple[str, str | None], ...]  # (label, value or None when the node lacks it)


def pool_of(node: NodeInfo, pool_labels: Iterable[str]) -> Pool:
    """The node's values of the pool labels, in the configured order."""
    return tuple((label, node.labels.get(label)) for label in pool_labels)


def pool_profile(pool: Pool) -> PlacementProfile:
    """A placement profile that fits the nodes of `pool` and no other (any taints)."""
    expressions: list[dict[str, Any]] = [
        {"key": label, "operator": "In", "values": [value]}
        if value is not None
        else {"key": label, "operator": "DoesNotExist"}
        for label, value in pool
    ]
    return PlacementProfile(
        nodeSelector={},
        requiredNodeAffinity=[{"matchExpressions": expressions}] if expressions else [],
        tolerations=[Toleration(operator="Exists")],
        gpu=False,
        namespace="",
        ownerKind=POOL_OWNER_KIND,
    )


def observed_images(
    nodes: Iterable[NodeInfo],
    *,
    registries: tuple[RegistryPrefix, ...],
    rules: tuple[SourceRule, ...],
    default_sources: tuple[str, ...],
    pool_labels: tuple[str, ...],
    ours: Mapping[str, frozenset[str]] | None = None,
) -> dict[str, SourcedImage]:
    """Managed images some node lists, for prefixes where the Observed source counts, less
    those image-sync itself holds on that node (`ours`: node → images)."""
    ours = ours or {}
    holders: dict[str, dict[Pool, int]] = {}
    counts: dict[str, int] = {}
    allowed: dict[str, bool] = {}
    for node in nodes:
        pool = pool_of(node, pool_labels)
        placed = ours.get(node.name, frozenset())
        for image in node.hinted_images:
            if image in placed:
                continue
            if image not in allowed:
                allowed[image] = is_managed(image, registries) is not None and (
                    SOURCE_OBSERVED in sources_for(image, rules, registries, default_sources)
                )
            if not allowed[image]:
                continue
            pools = holders.setdefault(image, {})
            pools[pool] = pools.get(pool, 0) + 1
            counts[image] = counts.get(image, 0) + 1
    out: dict[str, SourcedImage] = {}
    for image, pools in sorted(holders.items()):
        # Most-populated pools first when there are more pools than profiles fit.
        chosen = sorted(pools, key=lambda p: (-pools[p], repr(p)))[:MAX_PROFILES]
        out[image] = SourcedImage(
            image=image,
            source=SOURCE_OBSERVED,
            profiles=tuple(pool_profile(p) for p in sorted(chosen, key=repr)),
            status={"nodesReporting": counts[image]},
        )
    return out


def nodes_at_cap(nodes: Iterable[NodeInfo], cap: int = KUBELET_IMAGE_LIST_CAP) -> list[str]:
    """Nodes whose image list is full: they may hold images they do not report."""
    return sorted(node.name for node in nodes if node.images_listed >= cap)

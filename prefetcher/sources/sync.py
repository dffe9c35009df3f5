"""Each pass, what the Observed and Catalog sources want, as CachedImage writes; and their state.

The Observed source is read from the nodes the controller already watches; the Catalog source
from the registry reader's last results (`prefetcher.sources.catalog.CatalogReader`), which
lists registries on a thread of its own so a slow registry never holds up a pass. The same
reader's size lookups become status patches (compressedSize, platforms, digest) of the other
sources' objects.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from imagesync.config import Config
from imagesync.matching import RegistryPrefix
from imagesync.names import SOURCE_CATALOG, SOURCE_OBSERVED
from imagesync.reference import InvalidReference, parse_reference
from imagesync.sources import sources_for
from prefetcher.model import NodeInfo
from prefetcher.observe import normalize_or_keep
from prefetcher.sources.model import SourcedImage
from prefetcher.sources.observed import nodes_at_cap, observed_images
from prefetcher.sources.reconcile import SourceWrites, reconcile

log = logging.getLogger(__name__)

Obj = Mapping[str, Any]
# lastSeen of a source's object is rewritten at most this often, and never less often than
# ten times per imageRetention, so a release never comes early.
REFRESH_MAX = 86400.0
REFRESH_MIN = 3600.0
SIZE_FIELDS = ("compressedSize", "platforms", "digest")


class CatalogView(Protocol):
    """What the sync reads from the registry reader (a thread) each pass."""

    def listed(self) -> Mapping[RegistryPrefix, Mapping[str, SourcedImage] | None]:
        """Per catalog prefix: the images its last listing wants; None until one succeeded
        since the last failure (its objects are then kept as they are)."""
        ...

    def sizes(self) -> Mapping[str, Mapping[str, Any]]:
        """Registry facts (SIZE_FIELDS) of wanted images, by normalized reference."""
        ...

    def report(self) -> dict[str, Any]: ...


def refresh_interval(retention: float) -> float:
    return min(REFRESH_MAX, max(REFRESH_MIN, retention / 10))


def _covering(image: str, prefixes: Iterable[RegistryPrefix]) -> RegistryPrefix | None:
    """The longest of `prefixes` that covers `image`."""
    try:
        ref = parse_reference(image)
    except InvalidReference:
        return None
    matching = [p for p in prefixes if p.matches(ref)]
    return max(matching, key=lambda p: len(p.segments), default=None)


class SourceSync:
    """Turns the sources' wants into writes; remembers what the report shows about them."""

    def __init__(self, config: Config, catalog: CatalogView | None = None) -> None:
        self.config = config
        self.catalog = catalog
        self.nodes_at_cap: list[str] = []
        self.observed_count = 0
        # Whether any prefix counts the Observed source (else its objects are only released).
        self.observing = SOURCE_OBSERVED in config.default_sources or any(
            SOURCE_OBSERVED in rule.sources for rule in config.sources
        )

    def writes(
        self,
        nodes: Iterable[NodeInfo],
        objects: Sequence[Obj],
        now: datetime,
        ours: Mapping[str, frozenset[str]] | None = None,
    ) -> SourceWrites:
        """Every write that brings the Observed and Catalog objects (and sizes) up to date;
        `ours`: node → images image-sync itself holds there (they are not Observed)."""
        config = self.config
        nodes = list(nodes)
        refresh = refresh_interval(config.image_retention)
        retention = config.image_retention
        observed = (
            observed_images(
                nodes,
                registries=config.registries,
                rules=config.sources,
                default_sources=config.default_sources,
                pool_labels=config.node_pool_labels,
                ours=ours,
            )
            if self.observing
            else {}
        )
        self.observed_count = len(observed)
        at_cap = nodes_at_cap(nodes)
        if self.observing and at_cap and at_cap != self.nodes_at_cap:
            log.warning(
                "%d node(s) list as many images as the kubelet reports by default (%s): they may "
                "hold images the Observed source cannot see; raise the kubelet's "
                "nodeStatusMaxImages",
                len(at_cap),
                ", ".join(at_cap[:5]),
                extra={"nodes": at_cap[:20]},
            )
        self.nodes_at_cap = at_cap

        def release_observed(image: str, last_seen: datetime | None) -> bool:
            """No node lists it: release once imageRetention has passed since one did, or
            at once when the source no longer counts for its prefix."""
            return (
                last_seen is None
                or (now - last_seen).total_seconds() > retention
                or not self._counts(image, SOURCE_OBSERVED)
            )

        writes = reconcile(
            SOURCE_OBSERVED, observed, objects, now=now, refresh=refresh, release=release_observed
        )
        listed = dict(self.catalog.listed()) if self.catalog is not None else {}
        wanted: dict[str, SourcedImage] = {}
        for images in listed.values():
            wanted.update(images or {})

        def release_catalog(image: str, _: datetime | None) -> bool:
            prefix = _covering(image, listed)
            # No catalog rule covers it any more: release; its listing failed: keep.
            return prefix is None or listed[prefix] is not None

        catalog = reconcile(
            SOURCE_CATALOG, wanted, objects, now=now, refresh=refresh, release=release_catalog
        )
        writes.creates += catalog.creates
        writes.spec_patches += catalog.spec_patches
        writes.status_patches += catalog.status_patches
        writes.deletes += catalog.deletes
        if self.catalog is not None:
            writes.status_patches += self._size_patches(objects, self.catalog.sizes())
        return writes

    def _counts(self, image: str, source: str) -> bool:
        config = self.config
        return source in sources_for(
            image, config.sources, config.registries, config.default_sources
        )

    @staticmethod
    def _size_patches(
        objects: Iterable[Obj], sizes: Mapping[str, Mapping[str, Any]]
    ) -> list[tuple[str, dict[str, Any]]]:
        """Registry facts for objects that lack them (Catalog objects get them on creation)."""
        patches: list[tuple[str, dict[str, Any]]] = []
        for obj in objects:
            spec = obj.get("spec") or {}
            if spec.get("source") == SOURCE_CATALOG:
                continue
            facts = sizes.get(normalize_or_keep(str(spec.get("image") or "")))
            if not facts:
                continue
            status = obj.get("status") or {}
            changed = {k: v for k, v in facts.items() if k in SIZE_FIELDS and status.get(k) != v}
            if changed:
                patches.append((str(obj["metadata"]["name"]), changed))
        return patches

    def report(self) -> dict[str, Any]:
        """The `sources` section of /report."""
        out: dict[str, Any] = {
            "observed": {
                "images": self.observed_count,
                "nodePoolLabels": list(self.config.node_pool_labels),
                "nodesAtImageListCap": self.nodes_at_cap,
            },
        }
        if self.catalog is not None:
            out["catalog"] = self.catalog.report()
        return out

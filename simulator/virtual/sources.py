"""The Observed and Catalog sources in virtual time, made as the prefetcher makes them.

The real code decides everything; this module only feeds it the virtual cluster:

- the registries' catalogue, as the OCI API serves it (`simulator.registryserver`): tags
  listed once pushed, each tag's digest, platforms, compressed size and build time, read
  every `catalogInterval` into `prefetcher.sources.catalog.listed_images` (newest N tags,
  age limit), plus the size lookups of wanted images under a `sources` prefix;
- each pass, `prefetcher.sources.sync.SourceSync.writes` over the nodes' `status.images`
  (pool labels included) and the CachedImages, less what image-sync's own pods hold
  (`prefetcher.presence.present_images`); its writes are applied to a store of the
  prefetcher's Observed and Catalog objects, read back with `prefetcher.observe.wanted_image`.

The `sources` setting (`imagesync.sources`) says which sources count per prefix, as in a
cluster. A write is in the same pass's snapshot (the controller's watch brings it in this
pass or the next). A catalogue read that changed what is listed triggers a pass, as the
reader's `on_change` does. An outage makes a listing fail (its objects are kept).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from imagesync.config import Config
from imagesync.matching import RegistryPrefix
from imagesync.names import SOURCE_CATALOG, SOURCE_OBSERVED
from imagesync.quantities import parse_duration
from imagesync.reference import InvalidReference, parse_reference
from imagesync.sources import SourceRule, parse_rules, rule_for, sources_for
from prefetcher import observe, presence
from prefetcher.model import Snapshot, WantedImage
from prefetcher.registry.client import ImageFacts
from prefetcher.sources.catalog import (
    SIZE_LOOKUPS_PER_ROUND,
    catalog_limits,
    listed_images,
    under,
)
from prefetcher.sources.model import SourcedImage
from prefetcher.sources.reconcile import SourceWrites
from prefetcher.sources.sync import SIZE_FIELDS, SourceSync
from simulator.registry import CatalogImage, RegistrySet
from simulator.virtual.image_sync import ImageSync, moment

if TYPE_CHECKING:
    from simulator.virtual.cluster import VirtualCluster

Obj = dict[str, Any]
# Registries that do not list their repositories to users (NGC, Docker Hub): a catalog rule
# there needs its `repositories` named; the evaluation learns their images instead.
UNLISTED_HOSTS = frozenset({"nvcr.io", "docker.io", "registry-1.docker.io"})


# --- what the virtual registries tell a catalog client ---------------------------------


def image_facts(image: CatalogImage, epoch: float) -> ImageFacts:
    """What `prefetcher.registry.client.RegistryClient.facts` reads of `image` from the
    simulator's registry API: the index digest, its platforms, the largest platform's
    compressed size (config plus layer) and the build time."""
    return ImageFacts(
        digest=image.digest,
        platforms=tuple(sorted({f"{p.os}/{p.arch}" for p in image.platforms})),
        compressed_size=max((p.compressed_size for p in image.platforms), default=0),
        created=moment(image.created if image.created is not None else epoch),
    )


def registry_listing(
    registries: RegistrySet, rule: SourceRule, now: float
) -> dict[str, dict[str, ImageFacts]] | None:
    """Repository → tag → facts a catalog rule reads at `now`: the repositories under its
    prefix (or those it names), their tags pushed by then; None while the registry is down
    (the reader keeps the prefix's objects as they are)."""
    host = rule.prefix.domain
    registry = registries.registries.get(host)
    if registry is None or registries.is_down(host, now):
        return None
    listing: dict[str, dict[str, ImageFacts]] = {}
    for image in registry.images.values():
        repository = image.repository.split("/", 1)[1]
        wanted = (
            repository in rule.repositories if rule.repositories else under(rule.prefix, repository)
        )
        if wanted and image.pushed(now):
            listing.setdefault(repository, {})[image.tag] = image_facts(image, registries.epoch)
    return listing


class VirtualCatalog:
    """`prefetcher.sources.sync.CatalogView` over the virtual registries, read in rounds."""

    def __init__(self, config: Config, registries: RegistrySet) -> None:
        self.config = config
        self.registries = registries
        self._listed: dict[RegistryPrefix, dict[str, SourcedImage] | None] = {
            rule.prefix: None for rule in config.sources if rule.catalog
        }
        self._sizes: dict[str, dict[str, Any]] = {}
        self.rounds = 0

    def listed(self) -> Mapping[RegistryPrefix, Mapping[str, SourcedImage] | None]:
        return self._listed

    def sizes(self) -> Mapping[str, Mapping[str, Any]]:
        return self._sizes

    def report(self) -> dict[str, Any]:
        return {"rounds": self.rounds}

    def read(self, now: float, wanted: Iterable[WantedImage]) -> bool:
        """One round of the reader (every catalog prefix, then size lookups); whether what
        it lists changed."""
        before = dict(self._listed)
        for rule in self.config.sources:
            if not rule.catalog:
                continue
            listing = registry_listing(self.registries, rule, now)
            if listing is None:
                self._listed[rule.prefix] = None
                continue
            count, max_age = catalog_limits(rule, self.config)
            self._listed[rule.prefix] = listed_images(rule, listing, count, max_age, moment(now))
        self._lookup_sizes(now, wanted)
        self.rounds += 1
        return self._listed != before

    def _lookup_sizes(self, now: float, wanted: Iterable[WantedImage]) -> None:
        """Registry facts of wanted images under a `sources` prefix that lack a size."""
        config = self.config
        if not config.registry_size_lookup or not config.sources:
            return
        done = 0
        for image in wanted:
            name = image.image
            if image.source == SOURCE_CATALOG or image.compressed_size or name in self._sizes:
                continue
            if rule_for(name, config.sources, config.registries) is None:
                continue
            if done >= SIZE_LOOKUPS_PER_ROUND:
                return
            done += 1
            found = self._find(name, now)
            if found is not None:
                self._sizes[name] = image_facts(found, self.registries.epoch).status()

    def _find(self, image: str, now: float) -> CatalogImage | None:
        try:
            ref = parse_reference(image)
        except InvalidReference:
            return None
        registry = self.registries.registries.get(ref.domain)
        if registry is None or self.registries.is_down(ref.domain, now):
            return None
        found = registry.find(ref)
        return found if found is not None and found.pushed(now) else None


# --- the policy --------------------------------------------------------------------------


class SourcedImageSync(ImageSync):
    """image-sync with the `sources` setting of its config: Observed and Catalog objects
    next to the learned and declared ones, and registry sizes for the latter."""

    def __init__(
        self, config: Config, name: str = "image-sync", declared: Sequence[Mapping[str, Any]] = ()
    ) -> None:
        super().__init__(config, name=name, declared=declared)
        self.sync = SourceSync(config, None)
        self.catalog: VirtualCatalog | None = None
        self.objects: dict[str, Obj] = {}  # the prefetcher's Observed and Catalog objects
        self._converted: dict[str, tuple[int, WantedImage]] = {}
        self._versions: dict[str, int] = {}
        self._facts: dict[str, dict[str, Any]] = {}  # other objects' registry facts, by name
        self._with_facts: dict[str, tuple[WantedImage, Mapping[str, Any], WantedImage]] = {}
        self._uid = 0
        self.created_by_source = {SOURCE_OBSERVED: 0, SOURCE_CATALOG: 0}

    def attach(self, cluster: VirtualCluster) -> None:
        super().attach(cluster)
        if self.config.sources:  # as the prefetcher starts its registry reader
            self.catalog = VirtualCatalog(self.config, cluster.registries)
            self.sync = SourceSync(self.config, self.catalog)
            cluster.loop.at(cluster.loop.now, self._read_catalog)

    def _read_catalog(self) -> None:
        assert self.cluster is not None and self.catalog is not None
        now = self.cluster.loop.now
        if self.catalog.read(now, self._wanted()):
            self.trigger("registry catalog read")
        self.cluster.loop.at(now + self.config.catalog_interval, self._read_catalog)

    def stats(self) -> dict[str, float]:
        return {
            **super().stats(),
            "observed_objects": self.created_by_source[SOURCE_OBSERVED],
            "catalog_objects": self.created_by_source[SOURCE_CATALOG],
        }

    # -- each pass: the sources' writes, then the snapshot with their objects ------------
    def snapshot(self) -> Snapshot:
        snapshot = super().snapshot()
        ours = presence.present_images(snapshot.pods)
        objects = [*self.objects.values(), *self._learned_objects(snapshot.images)]
        writes = self.sync.writes(snapshot.nodes, objects, snapshot.now, ours)
        if writes:
            self._apply(writes, snapshot)
        return replace(snapshot, images=self._wanted(snapshot.images))

    def _learned_objects(self, images: Iterable[WantedImage]) -> list[Obj]:
        """The webhook's and the admin's objects as the sync reads them (for size lookups)."""
        return [
            {
                "metadata": {"name": w.name},
                "spec": {"image": w.image, "source": w.source},
                "status": self._facts.get(w.name, {}),
            }
            for w in images
        ]

    def _apply(self, writes: SourceWrites, snapshot: Snapshot) -> None:
        """The writes as the API server would store them."""
        stamp = snapshot.now.strftime("%Y-%m-%dT%H:%M:%SZ")
        for body in writes.creates:
            obj = copy.deepcopy(body)
            self._uid += 1
            obj["metadata"].update(uid=f"src-{self._uid}", creationTimestamp=stamp)
            obj["status"] = {}
            self._store(obj)
            self.created_by_source[obj["spec"]["source"]] += 1
        for name, spec in writes.spec_patches:
            patched = self.objects.get(name)
            if patched is not None:
                for key, value in spec.items():  # a JSON merge patch: None removes
                    if value is None:
                        patched["spec"].pop(key, None)
                    else:
                        patched["spec"][key] = copy.deepcopy(value)
                self._store(patched)
        for name, patch in writes.status_patches:
            stored = self.objects.get(name)
            if stored is not None:
                stored["status"].update(copy.deepcopy(patch))
                self._store(stored)
            else:
                sizes = {k: v for k, v in patch.items() if k in SIZE_FIELDS}
                self._facts[name] = {**self._facts.get(name, {}), **sizes}
        for name, uid in writes.deletes:
            doomed = self.objects.get(name)
            if doomed is not None and (not uid or doomed["metadata"]["uid"] == uid):
                del self.objects[name]
                self._converted.pop(name, None)

    def _store(self, obj: Obj) -> None:
        name = str(obj["metadata"]["name"])
        self.objects[name] = obj
        self._versions[name] = self._versions.get(name, 0) + 1

    def _wanted(self, learned: Iterable[WantedImage] | None = None) -> tuple[WantedImage, ...]:
        """Every CachedImage as the informer has it: the learner's (with the registry facts
        the sync wrote into them) and the sources' own. Unchanged objects keep their
        WantedImage, so the incremental planner reuses its work on them."""
        learned = self.learner.wanted() if learned is None else learned
        out = [self._sized(w) for w in learned]
        for name in sorted(self.objects):
            version = self._versions[name]
            hit = self._converted.get(name)
            if hit is None or hit[0] != version:
                hit = (version, observe.wanted_image(self.objects[name]))
                self._converted[name] = hit
            out.append(hit[1])
        return tuple(out)

    def _sized(self, image: WantedImage) -> WantedImage:
        facts = self._facts.get(image.name)
        if not facts:
            return image
        hit = self._with_facts.get(image.name)
        if hit is None or hit[0] is not image or hit[1] is not facts:
            read = observe.wanted_image({"status": facts})
            sized = replace(
                image, compressed_size=read.compressed_size, architectures=read.architectures
            )
            hit = (image, facts, sized)
            self._with_facts[image.name] = hit
        return hit[2]


# --- the policies' settings ------------------------------------------------------------


def with_rules(config: Config, rules: Sequence[Mapping[str, Any]]) -> Config:
    """`config` with the `sources` setting `rules` (as written in the config file)."""
    return replace(config, sources=parse_rules(list(rules), parse_duration))


def observed_rules(config: Config) -> list[dict[str, Any]]:
    """The Observed source on every managed prefix, next to what already counts there."""
    return [
        {"prefix": str(prefix), "from": [*_counting(config, prefix), SOURCE_OBSERVED.lower()]}
        for prefix in config.registries
    ]


def catalog_rules(config: Config, only: RegistryPrefix | None = None) -> list[dict[str, Any]]:
    """The Catalog source next to what already counts: by default one setting:
    every image of the registries that list their repositories (Harbor) wanted everywhere,
    the others (NGC) learned; with `only`, on that prefix alone."""

    def listed(prefix: RegistryPrefix) -> bool:
        return prefix == only if only is not None else prefix.domain not in UNLISTED_HOSTS

    rules = [
        {"prefix": str(p), "from": [*_counting(config, p), *(["catalog"] if listed(p) else [])]}
        for p in config.registries
    ]
    if only is not None and only not in config.registries:
        rules.append({"prefix": str(only), "from": [*_counting(config, only), "catalog"]})
    return rules


def _counting(config: Config, prefix: RegistryPrefix) -> list[str]:
    """The sources (config spelling) counting for images right under `prefix` now."""
    names = sources_for(
        f"{prefix}/probe:1", config.sources, config.registries, config.default_sources
    )
    return [name.lower() for name in names]

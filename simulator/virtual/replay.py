"""One workload (a scenario's, or a trace on a scenario's cluster) replayed under each cache
policy in virtual time: what `image-sync replay` and `bench/evaluate_virtual.py` run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from imagesync.config import Config
from imagesync.matching import is_managed, parse_prefix
from imagesync.reference import normalize
from simulator.scenario import Scenario
from simulator.virtual.baselines import REFRESH_SECONDS, Listing, ListPuller
from simulator.virtual.cluster import VirtualCluster
from simulator.virtual.image_sync import ImageSync
from simulator.virtual.oracle import Oracle
from simulator.virtual.pods import PodSpec
from simulator.virtual.policy import Policy
from simulator.virtual.results import RunResult
from simulator.virtual.sources import SourcedImageSync, catalog_rules, observed_rules, with_rules

POLICIES = (
    "none",
    "static-list",
    "everything",
    "image-sync",
    "image-sync+declared",
    "image-sync+demand",
    "image-sync+observed",
    "image-sync+catalog",
    "oracle",
)
# `image-sync+catalog:PREFIX`: the Catalog source on that managed prefix only.
CATALOG_ON = "image-sync+catalog:"
# After the last pod is created, the replay runs this long so late pulls can finish.
SETTLE_SECONDS = 600.0


@dataclass(frozen=True)
class Workload:
    """A cluster (nodes, registries, node events) and the pods to replay on it."""

    scenario: Scenario
    pods: tuple[PodSpec, ...]
    length: float
    static_list: tuple[Mapping[str, Any], ...] = field(default_factory=tuple)


def workload(
    scenario: Scenario,
    pods: Sequence[PodSpec],
    static_list: Sequence[Any] = (),
    settle: float = SETTLE_SECONDS,
) -> Workload:
    """A Workload that runs until `settle` seconds after its last pod or node event."""
    ends = [pod.at for pod in pods] + [event.at for event in scenario.events]
    entries = tuple(dict(e) if isinstance(e, Mapping) else {"image": str(e)} for e in static_list)
    entries = tuple({**e, "image": normalize(str(e["image"]))} for e in entries)
    return Workload(scenario, tuple(pods), max(ends, default=0.0) + settle, entries)


def everything_images(scenario: Scenario, config: Config) -> Listing:
    """Every image the managed registries serve at a moment (what a copy-everything tool
    lists and pulls at each refresh)."""
    images = [
        (normalize(image.reference), image)
        for registry in scenario.build_registries(0.0).registries.values()
        for image in registry.images.values()
        if is_managed(image.reference, config.registries) is not None
    ]
    return lambda now: sorted(name for name, image in images if image.pushed(now))


def known_policy(name: str) -> bool:
    """One of POLICIES, or `image-sync+catalog:PREFIX`."""
    return name in POLICIES or (name.startswith(CATALOG_ON) and len(name) > len(CATALOG_ON))


def make_policy(name: str, work: Workload, config: Config) -> Policy:
    if name == "none":
        return Policy()
    if name == "static-list":
        images = [str(e["image"]) for e in work.static_list]
        return ListPuller("static-list", images, REFRESH_SECONDS, follow_new_nodes=False)
    if name == "everything":
        listing = everything_images(work.scenario, config)
        return ListPuller("everything", listing, REFRESH_SECONDS, follow_new_nodes=True)
    if name in ("image-sync", "image-sync+declared"):
        declared = work.static_list if name == "image-sync+declared" else ()
        if config.sources:  # the Observed and Catalog sources as configured
            return SourcedImageSync(config, name=name, declared=declared)
        return ImageSync(config, name=name, declared=declared)
    if name == "image-sync+demand":
        return ImageSync(replace(config, placement="demand"), name=name)
    if name == "image-sync+observed":
        return SourcedImageSync(with_rules(config, observed_rules(config)), name=name)
    if name == "image-sync+catalog":
        return SourcedImageSync(with_rules(config, catalog_rules(config)), name=name)
    if name.startswith(CATALOG_ON):
        rules = catalog_rules(config, parse_prefix(name.removeprefix(CATALOG_ON)))
        return SourcedImageSync(with_rules(config, rules), name=name)
    if name == "oracle":
        return Oracle(work.pods, config)
    raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}")


def run(work: Workload, policy: str, config: Config) -> RunResult:
    """One replay of the workload under one policy."""
    result = VirtualCluster(
        work.scenario, work.pods, make_policy(policy, work, config), work.length
    ).run()
    return replace(result, policy=policy)


def run_all(work: Workload, policies: Sequence[str], config: Config) -> list[RunResult]:
    return [run(work, policy, config) for policy in policies]

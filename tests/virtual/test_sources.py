"""The Observed and Catalog sources in virtual time: the CachedImages the real sources make
from the same registries and nodes, and what a run with them puts on nodes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imagesync.config import Config, load_config
from imagesync.matching import parse_prefix
from imagesync.names import SOURCE_CATALOG, SOURCE_OBSERVED
from prefetcher import observe, presence
from prefetcher.model import Snapshot
from prefetcher.sources.catalog import CatalogReader
from prefetcher.sources.sync import SourceSync
from simulator.registry import registries_from_spec
from simulator.registryserver import RegistryServers
from simulator.virtual import replay
from simulator.virtual.cluster import VirtualCluster
from simulator.virtual.image_sync import EPOCH
from simulator.virtual.node import VirtualNode
from simulator.virtual.sources import (
    SourcedImageSync,
    VirtualCatalog,
    catalog_rules,
    observed_rules,
    with_rules,
)
from tests.virtual.small_cluster import APP, BIG, HARBOR, pod, scenario

START = EPOCH.timestamp()  # virtual second 0 as epoch seconds
TOOL = f"{HARBOR}/library/tool:2.0"  # pushed 10 minutes into the run
SPEC: list[dict[str, Any]] = [
    {
        "host": HARBOR,
        "bandwidth": "100MB/s",
        "latency": 0,
        "images": [
            {"image": "library/app:1.0", "compressed": "100MB", "disk": "200MB", "age": "3d"},
            {"image": "library/app:0.9", "compressed": "100MB", "disk": "200MB", "age": "200d"},
            {"image": "library/app:0.8", "compressed": "100MB", "disk": "200MB", "age": "20d"},
            {"image": "ml/big:1.0", "compressed": "1GB", "disk": "2GB", "archs": ["amd64"]},
            {"image": "library/tool:2.0", "compressed": "500MB", "pushedAt": "10m"},
            {"image": "library/tool:1.0", "compressed": "500MB", "age": "1d"},
        ],
    },
    {
        "host": "nvcr.io",
        "bandwidth": "100MB/s",
        "latency": 0,
        "images": [{"image": "nvidia/pytorch:24.08-py3", "compressed": "2GB", "disk": "4GB"}],
    },
    {
        "host": "ghcr.io",
        "bandwidth": "1GB/s",
        "latency": 0,
        "images": [{"image": "image-sync/image-sync:0.1.0", "compressed": "1MB"}],
    },
]


def base_config() -> Config:
    prefixes = (parse_prefix(HARBOR), parse_prefix("nvcr.io/nvidia"))
    return dataclasses.replace(load_config(None, environ={}), registries=prefixes)


class Clock:
    def __init__(self) -> None:
        self.at = START

    def now(self) -> float:
        return self.at

    def wait(self, event: Any, seconds: float) -> bool:
        return bool(event.wait(0))

    def monotonic(self) -> float:
        return self.at


@pytest.fixture
def served() -> Iterator[tuple[RegistryServers, Clock]]:
    clock = Clock()
    servers = RegistryServers(registries_from_spec(SPEC, epoch=START), clock.now)
    servers.start()
    try:
        yield servers, clock
    finally:
        servers.stop()


def test_the_virtual_catalog_lists_what_the_real_reader_reads_over_http(
    served: tuple[RegistryServers, Clock],
) -> None:
    servers, clock = served
    rules: list[dict[str, Any]] = [
        {"prefix": f"{HARBOR}/library", "from": ["catalog", "learned"], "tags": 2},
        {"prefix": f"{HARBOR}/ml", "from": ["catalog"], "maxAge": "30d"},
    ]
    virtual_config = with_rules(base_config(), rules)
    endpoint = servers.urls[HARBOR]
    real_config = with_rules(base_config(), [{**r, "endpoint": endpoint} for r in rules])
    reader = CatalogReader(real_config, clock=clock, read_secret=lambda _: None, wanted=list)
    catalog = VirtualCatalog(virtual_config, registries_from_spec(SPEC, epoch=0.0))
    for at in (0.0, 900.0):
        clock.at = START + at
        reader.read_once()
        catalog.read(at, [])
        assert catalog.listed() == reader.listed()
    library = catalog.listed()[parse_prefix(f"{HARBOR}/library")]
    assert library is not None
    # Newest 2 tags per repository, the pushed tag included once pushed; 0.9 is too old.
    assert sorted(library) == [f"{HARBOR}/library/app:0.8", APP, f"{HARBOR}/library/tool:1.0", TOOL]
    assert library[TOOL].status["imageCreated"] == "2026-01-05T00:10:00Z"


class CheckedAgainstRealSync(SourcedImageSync):
    """Each pass, the real sync's creates from the Node objects the API server would hold
    (its manifest, `status.images` as the kubelet reports them) next to the policy's."""

    def __init__(self, config: Config) -> None:
        super().__init__(config, name="image-sync+observed")
        self.compared: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def snapshot(self) -> Snapshot:
        assert self.cluster is not None
        api_nodes = [observe.node_info(node_object(n)) for n in self.cluster.live_nodes()]
        before = dict(self.objects)
        snapshot = super().snapshot()
        ours = presence.present_images(snapshot.pods)
        real = SourceSync(self.config).writes(api_nodes, list(before.values()), snapshot.now, ours)
        created = {n: o["spec"] for n, o in self.objects.items() if n not in before}
        self.compared.append((created, {b["metadata"]["name"]: b["spec"] for b in real.creates}))
        return snapshot


def node_object(node: VirtualNode) -> dict[str, Any]:
    images = [{"names": [name], "sizeBytes": size} for name, size in node.top_images().items()]
    return {**node.config.manifest(), "status": {"images": images}}


def test_observed_objects_are_the_real_syncs_from_the_same_nodes() -> None:
    # A pod pulls ml/big on one CPU node: the Observed source wants it on the CPU pool.
    setup = dataclasses.replace(scenario(cpu_nodes=2, gpu_nodes=1), registries=tuple(SPEC))
    policy = CheckedAgainstRealSync(with_rules(base_config(), observed_rules(base_config())))
    cluster = VirtualCluster(setup, [pod("big", 0.0, BIG, duration=None, cpu=15.0)], policy, 900.0)
    cluster.run()
    for created, real in policy.compared:
        assert created == real
    created_specs = [spec for created, _ in policy.compared for spec in created.values()]
    assert [spec["image"] for spec in created_specs] == [BIG]
    pool = created_specs[0]["profiles"][0]["requiredNodeAffinity"][0]["matchExpressions"]
    assert {"key": "nvidia.com/gpu.present", "operator": "DoesNotExist"} in pool
    assert all(node.has(BIG) for node in cluster.live_nodes() if node.pool == "cpu")
    assert not any(node.has(BIG) for node in cluster.live_nodes() if node.pool == "gpu")


def test_catalog_images_are_on_every_node_before_their_first_pod() -> None:
    setup = dataclasses.replace(scenario(cpu_nodes=2), registries=tuple(SPEC))
    pods = [pod("web", 0.0, APP, duration=None), pod("tool", 1800.0, TOOL)]
    work = replay.workload(setup, pods)
    config = base_config()
    catalog = SourcedImageSync(with_rules(config, catalog_rules(config)), name="image-sync+catalog")
    cluster = VirtualCluster(setup, pods, catalog, work.length)
    result = cluster.run()
    # The tag pushed at 10 min is listed at the 15-min read and pulled everywhere by 30 min.
    assert {p.name: p.hit for p in result.pods} == {"default/web": False, "default/tool": True}
    for node in cluster.live_nodes():
        assert node.has(TOOL) and node.has(BIG)
        assert not node.has(f"{HARBOR}/library/app:0.9")  # older than catalogMaxAge
    assert result.stats["catalog_objects"] == 5  # app 1.0, 0.8; big 1.0; tool 1.0, 2.0
    learned = replay.run(work, "image-sync", config)
    assert {p.name: p.hit for p in learned.pods} == {"default/web": False, "default/tool": False}
    assert learned.pods[1].cause == "first use"


def test_the_policies_settings_name_each_source_per_prefix() -> None:
    config = base_config()
    by_prefix = {
        r.prefix.domain: r.sources for r in with_rules(config, catalog_rules(config)).sources
    }
    assert by_prefix == {
        HARBOR: ("Declared", "Learned", SOURCE_CATALOG),
        "nvcr.io": ("Declared", "Learned"),
    }
    observed = with_rules(config, observed_rules(config)).sources
    assert all(r.sources[-1] == SOURCE_OBSERVED for r in observed)


def test_a_catalog_on_one_prefix_leaves_the_rest_learned() -> None:
    config = base_config()
    assert replay.known_policy("image-sync+catalog:harbor.example.internal/library")
    assert not replay.known_policy("image-sync+catalog:")
    rules = with_rules(config, catalog_rules(config, parse_prefix(f"{HARBOR}/library"))).sources
    assert {str(r.prefix): r.catalog for r in rules} == {
        HARBOR: False,
        "nvcr.io/nvidia": False,
        f"{HARBOR}/library": True,
    }


def test_observed_spreads_what_nodes_held_before_the_install() -> None:
    """bench/scenarios/running-cluster.yaml: half the nodes hold images from before the
    install; two of them come back late, in bursts wider than those nodes. Learning meets
    them at the burst's first pod; Observed has already spread them to the fresh nodes."""
    from bench.evaluate_virtual import evaluation_config, knowing_bandwidths
    from simulator.demo import load_run_scenario, scenario_extra
    from simulator.virtual.workload import scenario_pods

    path = str(Path(__file__).resolve().parents[2] / "bench/scenarios/running-cluster.yaml")
    scenario = load_run_scenario(path)
    work = replay.workload(
        scenario, scenario_pods(scenario), scenario_extra(path, "staticList") or []
    )
    config = knowing_bandwidths(evaluation_config(), scenario)
    learned, observed = (
        replay.run(work, policy, config) for policy in ("image-sync", "image-sync+observed")
    )

    def late_burst_misses(result: Any) -> list[str]:
        return sorted(
            p.name
            for p in result.pods
            if p.bound_at is not None
            and not p.hit
            and any("trainer" in i or "tensorflow" in i for i in p.images)
        )

    assert late_burst_misses(learned), "learning alone should miss the late bursts' replicas"
    assert late_burst_misses(observed) == []
    assert observed.figures()["hit_rate"] > learned.figures()["hit_rate"]

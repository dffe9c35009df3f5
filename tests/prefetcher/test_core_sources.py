"""The sources setting, the Observed source and the reconciler, as pure functions."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from imagesync.config import ConfigError, load_config
from imagesync.matching import parse_prefix
from imagesync.sources import parse_rules, sources_for
from prefetcher import eligibility, planner
from prefetcher.model import NodeInfo, Snapshot, WantedImage
from prefetcher.planning.demand import demand_index
from prefetcher.planning.images import merge_images
from prefetcher.sources.observed import nodes_at_cap, observed_images
from prefetcher.sources.reconcile import reconcile
from prefetcher.sources.sync import SourceSync
from tests.prefetcher.test_core_fixtures import config as cfg

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HARBOR = "harbor.example.internal/library/app:1.0"
NGC = "nvcr.io/nvidia/pytorch:24.08-py3"
REGISTRIES = (parse_prefix("harbor.example.internal"), parse_prefix("nvcr.io/nvidia"))


def node(name: str, images: tuple[str, ...] = (), labels: dict[str, str] | None = None) -> NodeInfo:
    base = {"kubernetes.io/arch": "amd64", **(labels or {})}
    return NodeInfo(
        name=name,
        labels=base,
        arch=base["kubernetes.io/arch"],
        hinted_images=dict.fromkeys(images, 100),
        images_listed=len(images),
    )


GPU = {"nvidia.com/gpu.present": "true"}


def test_rules_parse_and_the_longest_prefix_decides() -> None:
    rules = parse_rules(
        [
            {"prefix": "harbor.example.internal", "from": ["learned"]},
            {"prefix": "harbor.example.internal/library", "from": "catalog,learned", "tags": 2},
        ],
        float,
    )
    assert rules[1].sources == ("Catalog", "Learned") and rules[1].tags == 2
    assert sources_for(HARBOR, rules, REGISTRIES, ("Declared",)) == ("Catalog", "Learned")
    other = "harbor.example.internal/ml/trainer:2.3"
    assert sources_for(other, rules, REGISTRIES, ("Declared",)) == ("Learned",)
    assert sources_for(NGC, rules, REGISTRIES, ("Declared",)) == ("Declared",)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ([{"prefix": "harbor.example.internal", "from": ["guessed"]}], "unknown source"),
        ([{"prefix": "harbor.example.internal"}], "prefix and from are required"),
        ([{"prefix": "harbor.example.internal", "from": ["catalog"], "tags": 0}], "tags"),
        ([{"prefix": "harbor.example.internal", "from": [], "colour": 1}], "unknown key"),
        ([{"prefix": "harbor.example.internal", "from": [], "endpoint": "ftp://x"}], "endpoint"),
    ],
)
def test_bad_rules_name_the_problem(value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rules(value, float)


def test_a_rule_outside_the_managed_registries_is_refused(tmp_path: Any) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "registries: [nvcr.io/nvidia]\nsources: [{prefix: harbor.example.internal, from: [catalog]}]\n"
    )
    with pytest.raises(ConfigError, match="not under any of registries"):
        load_config(str(path), {})


def test_sources_from_the_environment_as_json() -> None:
    config = load_config(
        environ={
            "IMAGE_SYNC_REGISTRIES": "harbor.example.internal",
            "IMAGE_SYNC_SOURCES": '[{"prefix": "harbor.example.internal", "from": ["observed"]}]',
        }
    )
    assert config.sources[0].sources == ("Observed",)


def test_observed_images_are_wanted_on_their_pool_only() -> None:
    nodes = [
        node("cpu-1", (HARBOR,)),
        node("cpu-2"),
        node("gpu-1", (NGC,), labels=GPU),
        node("gpu-2", labels=GPU),
        node("arm-1", labels={"kubernetes.io/arch": "arm64"}),
    ]
    wanted = observed_images(
        nodes,
        registries=REGISTRIES,
        rules=(),
        default_sources=("Observed",),
        pool_labels=("kubernetes.io/arch", "nvidia.com/gpu.present"),
    )
    assert set(wanted) == {HARBOR, NGC}
    config = cfg()
    for image, fits in ((HARBOR, {"cpu-1", "cpu-2"}), (NGC, {"gpu-1", "gpu-2"})):
        obj = WantedImage(name="x", image=image, source="Observed", profiles=wanted[image].profiles)
        placed = {n.name for n in nodes if eligibility.placement_problem(obj, n, config) is None}
        assert placed == fits, image
    assert wanted[HARBOR].status == {"nodesReporting": 1}


def test_observed_skips_unmanaged_images_and_prefixes_without_the_source() -> None:
    rules = parse_rules([{"prefix": "nvcr.io/nvidia", "from": ["learned"]}], float)
    nodes = [node("n", (HARBOR, NGC, "docker.io/library/busybox:1.36"))]
    wanted = observed_images(
        nodes,
        registries=REGISTRIES,
        rules=rules,
        default_sources=("Observed",),
        pool_labels=(),
    )
    assert set(wanted) == {HARBOR}
    assert wanted[HARBOR].profiles[0]["requiredNodeAffinity"] == []


def test_nodes_at_the_kubelet_cap_are_named() -> None:
    full = NodeInfo(name="full", images_listed=50)
    assert nodes_at_cap([full, node("few", (HARBOR,))]) == ["full"]


def _obj(name: str, image: str, source: str, last_seen: datetime | None, **spec: Any) -> Any:
    status = {"lastSeen": last_seen.strftime("%Y-%m-%dT%H:%M:%SZ")} if last_seen else {}
    return {
        "metadata": {"name": name, "uid": f"uid-{name}"},
        "spec": {"image": image, "source": source, **spec},
        "status": status,
    }


def test_reconcile_creates_refreshes_and_releases() -> None:
    config = cfg(registries=REGISTRIES, default_sources=("Declared", "Learned", "Observed"))
    sync = SourceSync(config)
    nodes = [node("cpu-1", (HARBOR,))]
    first = sync.writes(nodes, [], NOW)
    assert [b["metadata"]["name"] for b in first.creates] == [
        "observed-harbor.example.internal-library-app-1.0-"
        + first.creates[0]["metadata"]["name"][-10:]
    ]
    stored = dict(
        first.creates[0], status={"lastSeen": "2026-12-01T12:00:00Z", "nodesReporting": 1}
    )
    # Converged: nothing to write an hour later; a day later lastSeen is refreshed.
    assert not sync.writes(nodes, [stored], NOW + timedelta(minutes=59))
    later = sync.writes(nodes, [stored], NOW + timedelta(days=2))
    assert later.status_patches and not later.creates
    # Gone from every node: kept through imageRetention, then deleted.
    assert not sync.writes([node("cpu-1")], [stored], NOW + timedelta(days=13)).deletes
    gone = sync.writes([node("cpu-1")], [stored], NOW + timedelta(days=15))
    assert gone.deletes == [(stored["metadata"]["name"], "")]


def test_reconcile_leaves_objects_it_does_not_own() -> None:
    declared = _obj("mine", HARBOR, "Observed", NOW - timedelta(days=30))
    writes = reconcile("Observed", {}, [declared], now=NOW, refresh=3600, release=lambda *_: True)
    assert not writes


def test_source_rank_and_per_prefix_filter_in_planning() -> None:
    rules = parse_rules([{"prefix": "nvcr.io/nvidia", "from": ["learned"]}], float)
    config = cfg(registries=REGISTRIES, sources=rules, default_sources=("Declared", "Observed"))
    images = (
        WantedImage(name="a", image=HARBOR, source="Observed", last_seen=NOW),
        WantedImage(name="b", image="harbor.example.internal/x/y:1", source="Declared"),
        WantedImage(name="c", image=NGC, source="Observed", last_seen=NOW),
        WantedImage(name="d", image="nvcr.io/nvidia/cuda:12", source="Learned", last_seen=NOW),
    )
    snapshot = Snapshot(now=NOW, images=images)
    no_demand = demand_index(snapshot.demand, [], config, NOW)
    merged = merge_images(snapshot, config, no_demand)
    assert [m.image for m in merged] == [
        "harbor.example.internal/x/y:1",
        "nvcr.io/nvidia/cuda:12",
        HARBOR,
    ]  # NGC's Observed object does not count: its rule says learned only
    reordered = dataclasses.replace(
        config, source_order=("Observed", "Declared", "Learned", "Catalog")
    )
    assert merge_images(snapshot, reordered, no_demand)[0].image == HARBOR


def test_compressed_size_sets_the_deadline_before_the_first_pull() -> None:
    config = cfg(registries=REGISTRIES)
    image = WantedImage(name="p", image=NGC, source="Declared", compressed_size=9_500_000_000)
    plan = planner.plan(
        Snapshot(now=NOW, nodes=(node("gpu-1", labels=GPU),), images=(image,)), config
    )
    [pull] = plan.pulls
    assert pull.pod["spec"]["activeDeadlineSeconds"] >= 9_500_000_000 / 10_000_000


def test_images_image_sync_placed_are_not_observed() -> None:
    nodes = [node("cpu-1", (HARBOR, NGC)), node("cpu-2", (NGC,))]
    wanted = observed_images(
        nodes,
        registries=REGISTRIES,
        rules=(),
        default_sources=("Observed",),
        pool_labels=(),
        ours={"cpu-1": frozenset({HARBOR, NGC})},
    )
    assert set(wanted) == {NGC} and wanted[NGC].status == {"nodesReporting": 1}

"""Learned images: confirmation by stored pods, and the per-namespace and total bounds."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from imagesync.cachedimage import PlacementProfile
from imagesync.config import load_config
from imagesync.matching import parse_prefix, pod_images
from prefetcher.confirmation import StoredPodImages, confirmation_patches
from prefetcher.learnlimits import (
    NAMESPACE_LIMIT,
    TOTAL_LIMIT,
    UNCONFIRMED,
    select_learned,
)
from prefetcher.model import WantedImage
from prefetcher.report import learning_section

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
TODAY = NOW.strftime("%Y-%m-%d")
CONFIG = dataclasses.replace(
    load_config(environ={}), max_learned_images=3, max_learned_images_per_namespace=2
)
REGISTRIES = (parse_prefix("nvcr.io/nvidia"), parse_prefix("harbor.example.internal"))


def profile(namespace: str, **selector: str) -> PlacementProfile:
    return PlacementProfile(
        nodeSelector=dict(selector),
        requiredNodeAffinity=[],
        tolerations=[],
        gpu=False,
        namespace=namespace,
        ownerKind="Job",
    )


def learned(
    image: str, uses: int, *namespaces: str, confirmed: tuple[str, ...] | None = None
) -> WantedImage:
    return WantedImage(
        name=image,
        image=image,
        profiles=tuple(profile(ns) for ns in namespaces),
        last_seen=NOW,
        daily_uses={TODAY: uses},
        confirmed_namespaces=frozenset(namespaces if confirmed is None else confirmed),
    )


def names(images: tuple[WantedImage, ...]) -> list[str]:
    return sorted(image.image for image in images)


def test_unconfirmed_images_and_profiles_are_not_planned() -> None:
    forged = learned("nvcr.io/nvidia/forged:1", 50, "shop", confirmed=())
    mixed = WantedImage(
        name="mixed",
        image="nvcr.io/nvidia/mixed:1",
        profiles=(profile("shop"), profile("elsewhere", gpu="true")),
        last_seen=NOW,
        daily_uses={TODAY: 1},
        confirmed_namespaces=frozenset({"shop"}),
    )
    selection = select_learned([forged, mixed], NOW, CONFIG)
    assert selection.left_out[UNCONFIRMED] == ("nvcr.io/nvidia/forged:1",)
    [planned] = selection.images
    assert [p["namespace"] for p in planned.profiles] == ["shop"]  # no forged placement


def test_each_namespace_keeps_its_best_scored_images_and_the_total_is_bounded() -> None:
    images = [
        learned("nvcr.io/nvidia/a:1", 9, "ci"),
        learned("nvcr.io/nvidia/b:1", 8, "ci"),
        learned("nvcr.io/nvidia/c:1", 7, "ci"),  # third in ci: over its bound
        learned("nvcr.io/nvidia/d:1", 5, "ml"),
        learned("nvcr.io/nvidia/e:1", 4, "ml"),  # fourth overall: over the total
        dataclasses.replace(learned("nvcr.io/nvidia/declared:1", 0), source="Declared"),
        dataclasses.replace(
            learned("nvcr.io/nvidia/old:1", 1, "ci"),
            last_seen=NOW - timedelta(days=60),
            daily_uses={},
        ),
    ]
    selection = select_learned(images, NOW, CONFIG)
    assert names(selection.images) == [
        "nvcr.io/nvidia/a:1",
        "nvcr.io/nvidia/b:1",
        "nvcr.io/nvidia/d:1",
        "nvcr.io/nvidia/declared:1",  # the admin's choice: never counted
        "nvcr.io/nvidia/old:1",  # past retention: passed on for the planner to release
    ]
    assert selection.left_out[NAMESPACE_LIMIT] == ("nvcr.io/nvidia/c:1",)
    assert selection.left_out[TOTAL_LIMIT] == ("nvcr.io/nvidia/e:1",)
    assert selection.full_namespaces == ("ci",)
    section = learning_section(selection, CONFIG)
    assert (section["overNamespaceLimit"], section["overTotalLimit"]) == (1, 1)
    assert len(section["boundReached"]) == 2
    assert "maxLearnedImages (3)" in section["boundReached"][1]


def test_a_namespace_over_its_bound_adds_no_placement_to_a_shared_image() -> None:
    images = [
        learned("nvcr.io/nvidia/a:1", 9, "ci"),
        learned("nvcr.io/nvidia/b:1", 8, "ci"),
        learned("nvcr.io/nvidia/shared:1", 1, "ci", "ml"),
    ]
    selection = select_learned(images, NOW, CONFIG)
    shared = next(i for i in selection.images if i.image == "nvcr.io/nvidia/shared:1")
    assert [p["namespace"] for p in shared.profiles] == ["ml"]


def pod(namespace: str, *images: str, managed_by: str = "") -> dict[str, object]:
    labels = {"app.kubernetes.io/managed-by": managed_by} if managed_by else {}
    return {
        "metadata": {"name": "p", "namespace": namespace, "labels": labels},
        "spec": {
            "initContainers": [{"name": "init", "image": images[0]}],
            "containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)],
        },
    }


def test_stored_pods_are_remembered_bounded_and_forgotten() -> None:
    seen = StoredPodImages(REGISTRIES, remember=60, capacity=3)
    assert seen.observe(pod("shop", "nvcr.io/nvidia/a:1", "quay.io/x/y:1"), now=0)
    assert not seen.observe(pod("shop", "nvcr.io/nvidia/a:1"), now=1)  # nothing new
    assert not seen.observe(pod("image-sync", "nvcr.io/nvidia/b:1", managed_by="image-sync"), 1)
    assert seen.namespaces(now=2) == {"nvcr.io/nvidia/a:1": {"shop"}}
    for index in range(3):
        seen.observe(pod("ml", f"nvcr.io/nvidia/m{index}:1"), now=3)
    assert len(seen) == 3  # the oldest went first
    assert seen.namespaces(now=100) == {}


def test_confirmation_patches_add_namespaces_to_learned_images_only() -> None:
    objects: list[dict[str, Any]] = [
        {
            "metadata": {"name": "a"},
            "spec": {"image": "nvcr.io/nvidia/a:1", "source": "Learned"},
            "status": {"useCount": 3},
        },
        {
            "metadata": {"name": "b"},
            "spec": {"image": "nvcr.io/nvidia/b:1", "source": "Learned"},
            "status": {"confirmedNamespaces": ["ml"], "confirmedAt": "earlier"},
        },
        {"metadata": {"name": "d"}, "spec": {"image": "nvcr.io/nvidia/d:1", "source": "Declared"}},
    ]
    seen = {
        "nvcr.io/nvidia/a:1": {"shop"},
        "nvcr.io/nvidia/b:1": {"ml", "ci"},
        "nvcr.io/nvidia/d:1": {"x"},
    }
    assert confirmation_patches(objects, seen, "now") == [
        ("a", {"confirmedNamespaces": ["shop"], "confirmedAt": "now"}),
        ("b", {"confirmedNamespaces": ["ml", "ci"]}),
    ]
    assert confirmation_patches(objects[1:2], {"nvcr.io/nvidia/b:1": {"ml"}}, "now") == []


def test_pod_images_are_the_managed_normalized_ones() -> None:
    assert pod_images(
        pod("x", "harbor.example.internal/a/b:1", "nvcr.io/nvidia/c", "x:tést"), REGISTRIES
    ) == {"harbor.example.internal/a/b:1", "nvcr.io/nvidia/c:latest"}


def test_only_learned_images_need_a_stored_pod() -> None:
    # The prefetcher's own Observed and Catalog objects come from nodes and registries, not
    # from admission reviews: nothing to confirm, no learned bound to count against.
    own = [
        WantedImage(
            name=f"{source.lower()}-x",
            image=f"harbor.example.internal/a/{source}:1",
            source=source,
            last_seen=NOW,
        )
        for source in ("Observed", "Catalog", "Declared")
    ]
    unconfirmed = WantedImage(
        name="l",
        image="harbor.example.internal/a/l:1",
        source="Learned",
        last_seen=NOW,
        profiles=(profile("team"),),
    )
    selection = select_learned([*own, unconfirmed], NOW, CONFIG)
    assert {i.source for i in selection.images} == {"Observed", "Catalog", "Declared"}
    assert list(selection.left_out[UNCONFIRMED]) == [unconfirmed.image]

"""Image store and the kubelet's image GC thresholds, minimum age and in-use protection."""

from __future__ import annotations

from simulator.imagestore import GCPolicy, ImageStore
from simulator.registry import Resolved, catalog_image

GB = 1_000_000_000


def _resolved(name: str, disk: int) -> Resolved:
    image = catalog_image(name, compressed=disk // 2, disk=disk)
    return Resolved(reference=image.reference, image=image, platform=image.platforms[0])


def _store(policy: GCPolicy | None = None) -> ImageStore:
    return ImageStore(100 * GB, system_bytes=10 * GB, policy=policy)


def test_below_high_threshold_nothing_is_collected() -> None:
    store = _store()
    a = store.add(_resolved("docker.io/library/a:1", 70 * GB), 0.0)
    report = store.collect(1000.0, set(), set())
    assert report.removed == []
    assert store.has("docker.io/library/a:1")
    assert a.image_id in store.images


def test_gc_frees_down_to_low_threshold_oldest_first_sparing_running() -> None:
    store = _store()
    old = store.add(_resolved("docker.io/library/old:1", 20 * GB), 0.0)
    running = store.add(_resolved("docker.io/library/run:1", 30 * GB), 10.0)
    mid = store.add(_resolved("docker.io/library/mid:1", 30 * GB), 20.0)
    assert store.usage_percent() >= 85
    report = store.collect(1000.0, {running.image_id}, set())
    assert old.image_id in report.removed
    assert running.image_id in store.images
    assert store.usage_percent() <= 80
    assert mid.image_id in store.images  # freeing old was enough


def test_min_age_protects_young_images() -> None:
    store = _store()
    store.add(_resolved("docker.io/library/young:1", 80 * GB), 990.0)
    report = store.collect(1000.0, set(), set())
    assert report.removed == []
    assert report.shortfall > 0
    assert "Failed to garbage collect required amount of images" in report.message


def test_exited_containers_protect_only_until_disk_pressure() -> None:
    store = _store()
    exited = store.add(_resolved("docker.io/library/job:1", 50 * GB), 0.0)
    # Below the threshold the exited container still protects (and nothing is needed anyway).
    assert store.collect(1000.0, set(), {exited.image_id}).removed == []
    store.add(_resolved("docker.io/library/big:1", 30 * GB), 1500.0)
    report = store.collect(2000.0, set(), {exited.image_id})
    assert report.exited_containers_removed
    assert exited.image_id in report.removed


def test_maximum_age_removes_unused_images_even_without_pressure() -> None:
    store = _store(GCPolicy(max_age=3600.0))
    idle = store.add(_resolved("docker.io/library/idle:1", 1 * GB), 0.0)
    used = store.add(_resolved("docker.io/library/used:1", 1 * GB), 0.0)
    report = store.collect(7200.0, {used.image_id}, set())
    assert report.removed == [idle.image_id]


def test_disk_pressure_and_status_images_cap() -> None:
    store = ImageStore(100 * GB, policy=GCPolicy())
    for i in range(60):
        store.add(_resolved(f"docker.io/library/i{i}:1", (i + 1) * 10_000_000), 0.0)
    images = store.node_status_images()
    assert len(images) == 50
    sizes = [int(str(i["sizeBytes"])) for i in images]
    assert sizes == sorted(sizes, reverse=True)
    assert not store.disk_pressure()
    store.add(_resolved("docker.io/library/huge:1", 90 * GB), 0.0)
    assert store.disk_pressure()


def test_tag_moves_to_the_newest_image() -> None:
    store = _store()
    first = catalog_image(
        "docker.io/library/app:latest", compressed=1, disk=GB, digest="sha256:" + "a" * 64
    )
    second = catalog_image(
        "docker.io/library/app:latest", compressed=1, disk=GB, digest="sha256:" + "b" * 64
    )
    store.add(Resolved(first.reference, first, first.platforms[0]), 0.0)
    store.add(Resolved(second.reference, second, second.platforms[0]), 1.0)
    found = store.find("docker.io/library/app:latest")
    assert found is not None and found.image_id.endswith("b" * 64)

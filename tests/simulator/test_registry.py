"""Simulated registries: resolution, the errors containerd reports, and shared bandwidth."""

from __future__ import annotations

import pytest

from imagesync.quantities import parse_bandwidth
from simulator.registry import (
    PullError,
    PullErrorKind,
    Registry,
    RegistrySet,
    Resolved,
    catalog_image,
    registries_from_spec,
)


def _registries() -> RegistrySet:
    nvcr = Registry(host="nvcr.io", bandwidth=100e6, unauthorized=("nvidia/private",))
    nvcr.add(catalog_image("nvcr.io/nvidia/pytorch:24.08-py3", compressed="9.5GB", disk="20.4GB"))
    nvcr.add(catalog_image("nvcr.io/nvidia/private/x:1", compressed="1GB", disk="2GB"))
    hub = Registry(host="docker.io", bandwidth=50e6)
    hub.add(catalog_image("busybox:1.36", compressed="2MB", disk="4.3MB", archs=("amd64", "arm64")))
    return RegistrySet([nvcr, hub], epoch=1000.0)


def test_resolves_a_known_image_for_the_node_arch() -> None:
    result = _registries().resolve("busybox:1.36", "arm64", 1000.0)
    assert isinstance(result, Resolved)
    assert result.reference == "docker.io/library/busybox:1.36"
    assert result.image_id.startswith("docker.io/library/busybox@sha256:")
    assert result.platform.disk_size == 4_300_000


def test_pytorch_sizes() -> None:
    result = _registries().resolve("nvcr.io/nvidia/pytorch:24.08-py3", "amd64", 0.0)
    assert isinstance(result, Resolved)
    assert result.platform.compressed_size == 9_500_000_000
    assert result.platform.disk_size == 20_400_000_000


@pytest.mark.parametrize(
    ("reference", "arch", "kind", "text"),
    [
        ("nvcr.io/nvidia/nope:1", "amd64", PullErrorKind.NOT_FOUND, "not found"),
        ("quay.io/x/y:1", "amd64", PullErrorKind.NOT_FOUND, "not found"),
        ("nvcr.io/nvidia/private/x:1", "amd64", PullErrorKind.UNAUTHORIZED, "pull access denied"),
        (
            "nvcr.io/nvidia/pytorch:24.08-py3",
            "arm64",
            PullErrorKind.NO_PLATFORM,
            "no matching manifest for linux/arm64 in the manifest list entries",
        ),
    ],
)
def test_failures_read_like_containerd(
    reference: str, arch: str, kind: PullErrorKind, text: str
) -> None:
    result = _registries().resolve(reference, arch, 0.0)
    assert isinstance(result, PullError)
    assert result.kind is kind
    assert text in result.message
    assert result.message.startswith("rpc error: code = ")


def test_outage_window_is_relative_to_the_epoch() -> None:
    registries = registries_from_spec(
        [
            {
                "host": "r.example",
                "outages": [{"start": 60, "duration": 30}],
                "images": [{"image": "a:1", "compressed": "1MB"}],
            }
        ],
        epoch=1000.0,
    )
    assert isinstance(registries.resolve("r.example/a:1", "amd64", 1059.0), Resolved)
    down = registries.resolve("r.example/a:1", "amd64", 1070.0)
    assert isinstance(down, PullError) and down.kind is PullErrorKind.UNAVAILABLE
    assert isinstance(registries.resolve("r.example/a:1", "amd64", 1091.0), Resolved)


def test_bandwidth_is_shared_by_transfers() -> None:
    registries = _registries()
    assert registries.share("nvcr.io") == 100e6
    registries.begin_transfer("nvcr.io")
    registries.begin_transfer("nvcr.io")
    registries.begin_transfer("nvcr.io")
    registries.begin_transfer("nvcr.io")
    assert registries.share("nvcr.io") == 25e6
    registries.end_transfer("nvcr.io")
    assert registries.active_transfers("nvcr.io") == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [("100MB/s", 100e6), ("1Gbps", 125e6), ("10MiB/s", 10 * 1024**2), (5e6, 5e6)],
)
def test_parse_bandwidth(text: object, expected: float) -> None:
    assert parse_bandwidth(text) == pytest.approx(expected)


def test_pull_secret_opens_a_refused_repository() -> None:
    registries = registries_from_spec(
        [
            {
                "host": "harbor.example.internal",
                "unauthorized": ["private"],
                "pullSecrets": ["harbor-creds"],
                "images": [{"image": "private/model:1", "compressed": "1MB"}],
            }
        ]
    )
    ref = "harbor.example.internal/private/model:1"
    assert isinstance(registries.resolve(ref, "amd64", 0.0), PullError)
    assert isinstance(registries.resolve(ref, "amd64", 0.0, secrets=("other",)), PullError)
    assert isinstance(registries.resolve(ref, "amd64", 0.0, secrets=("harbor-creds",)), Resolved)


def test_a_tag_pushed_during_the_run_is_not_found_before() -> None:
    spec = [
        {
            "host": "harbor.example.internal",
            "images": [
                {"image": "apps/web:1.0", "compressed": "50MB", "age": "2d"},
                {"image": "apps/web:1.1", "compressed": "50MB", "pushedAt": "1h"},
            ],
        }
    ]
    registries = registries_from_spec(spec, epoch=1000.0)
    new = registries.registries["harbor.example.internal"].images[
        "harbor.example.internal/apps/web:1.1"
    ]
    assert (new.pushed_at, new.created) == (4600.0, 4600.0)
    before = registries.resolve("harbor.example.internal/apps/web:1.1", "amd64", 4599.0)
    assert isinstance(before, PullError) and before.kind is PullErrorKind.NOT_FOUND
    assert isinstance(
        registries.resolve("harbor.example.internal/apps/web:1.1", "amd64", 4600.0), Resolved
    )
    assert isinstance(
        registries.resolve("harbor.example.internal/apps/web:1.0", "amd64", 0.0), Resolved
    )

"""The CachedImage contract shared by the webhook (writer) and the prefetcher (reader)."""

import re
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from imagesync.cachedimage import (
    MAX_PROFILES,
    PlacementProfile,
    format_time,
    merge_daily_uses,
    merge_profiles,
    object_name,
    parse_time,
    profile_from_pod,
    requests_gpu,
)

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


@given(st.text(min_size=1, max_size=300))
def test_object_names_are_valid_and_stable(image: str) -> None:
    name = object_name(image)
    assert DNS_SUBDOMAIN.match(name) and len(name) <= 63
    assert object_name(image) == name


def test_object_names_differ_per_image() -> None:
    assert object_name("nvcr.io/nvidia/cuda:12") != object_name("nvcr.io/nvidia/cuda:12.1")
    assert object_name("nvcr.io/nvidia/pytorch:24.08-py3").startswith(
        "nvcr.io-nvidia-pytorch-24.08-py3-"
    )


def gpu_job_pod() -> dict[str, object]:
    return {
        "metadata": {"ownerReferences": [{"kind": "Job", "name": "train", "controller": True}]},
        "spec": {
            "nodeSelector": {"nvidia.com/gpu.present": "true"},
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": "zone", "operator": "In", "values": ["a"]}
                                ]
                            }
                        ]
                    }
                }
            },
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
            "containers": [{"name": "t", "resources": {"limits": {"nvidia.com/gpu": "8"}}}],
        },
    }


def test_profile_from_a_gpu_job() -> None:
    profile = profile_from_pod(gpu_job_pod(), "training")
    assert profile == {
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "requiredNodeAffinity": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
        ],
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "gpu": True,
        "namespace": "training",
        "ownerKind": "Job",
        "requests": {"nvidia.com/gpu": "8"},
    }


def test_gpu_request_detection() -> None:
    assert not requests_gpu({"containers": [{"name": "a"}]})
    assert not requests_gpu({"containers": [{"resources": {"limits": {"nvidia.com/gpu": "0"}}}]})
    assert requests_gpu({"initContainers": [{"resources": {"requests": {"nvidia.com/gpu": 1}}}]})


def profile(namespace: str, seen: str) -> PlacementProfile:
    return PlacementProfile(
        nodeSelector={},
        requiredNodeAffinity=[],
        tolerations=[],
        gpu=False,
        namespace=namespace,
        ownerKind="",
        lastSeen=seen,
    )


def test_merge_profiles_dedupes_keeps_newest_and_bounds() -> None:
    merged = merge_profiles(
        [profile("a", "2026-01-01T00:00:00Z")], [profile("a", "2026-02-01T00:00:00Z")]
    )
    assert merged == [profile("a", "2026-02-01T00:00:00Z")]
    many = [profile(f"ns{i}", f"2026-01-{i + 1:02d}T00:00:00Z") for i in range(MAX_PROFILES + 5)]
    kept = merge_profiles([], many)
    assert len(kept) == MAX_PROFILES
    assert kept[-1]["namespace"] == f"ns{MAX_PROFILES + 4}"
    assert all(p["namespace"] != "ns0" for p in kept)


def test_daily_uses_add_and_expire() -> None:
    today = datetime(2026, 11, 22, tzinfo=UTC)
    merged = merge_daily_uses(
        {"2026-11-22": 2, "2026-09-01": 7}, {"2026-11-22": 3, "2026-11-21": 1}, today
    )
    assert merged == {"2026-11-21": 1, "2026-11-22": 5}


def test_time_round_trip() -> None:
    moment = datetime(2026, 11, 22, 10, 0, 0, tzinfo=UTC)
    assert parse_time(format_time(moment)) == moment
    assert format_time(moment) == "2026-11-22T10:00:00Z"

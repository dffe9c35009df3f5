"""A pod's effective requests as kube-scheduler adds them up, and how profiles merge them."""

from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from imagesync.cachedimage import PlacementProfile, merge_profiles, profile_from_pod
from imagesync.resources import format_quantity, pod_requests, quantity, smaller_requests


def container(requests: dict[str, Any] | None = None, limits: dict[str, Any] | None = None,
              **extra: Any) -> dict[str, Any]:  # fmt: skip
    resources: dict[str, Any] = {}
    if requests is not None:
        resources["requests"] = requests
    if limits is not None:
        resources["limits"] = limits
    return {"name": "c", "image": "x", "resources": resources, **extra}


def test_containers_add_up() -> None:
    spec = {
        "containers": [
            container({"cpu": "500m", "memory": "1Gi"}),
            container({"cpu": "1", "memory": "512Mi", "nvidia.com/gpu": 2}),
        ]
    }
    assert pod_requests(spec) == {"cpu": "1500m", "memory": "1536Mi", "nvidia.com/gpu": "2"}


def test_a_limit_alone_is_the_request_and_a_request_overrides_its_limit() -> None:
    spec = {
        "containers": [
            container(limits={"nvidia.com/gpu": "8", "memory": "4Gi"}),
            container({"cpu": "2"}, limits={"cpu": "4"}),
        ]
    }
    assert pod_requests(spec) == {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "8"}


def test_the_largest_init_container_raises_each_resource_on_its_own() -> None:
    spec = {
        "initContainers": [
            container({"cpu": "4", "memory": "1Gi"}),
            container({"memory": "3Gi", "example.com/fpga": "1"}),
        ],
        "containers": [container({"cpu": "1", "memory": "2Gi"})],
    }
    # cpu from the first init container, memory from the second, the FPGA from the second too.
    assert pod_requests(spec) == {"cpu": "4", "example.com/fpga": "1", "memory": "3Gi"}


def test_sidecars_run_beside_the_containers_and_the_later_init_containers() -> None:
    sidecar = container({"cpu": "1", "memory": "1Gi"}, restartPolicy="Always")
    spec = {
        "initContainers": [sidecar, container({"cpu": "3"})],
        "containers": [container({"cpu": "1", "memory": "1Gi"})],
    }
    # Containers with the sidecar: 2 cpu, 2Gi; the init container with the sidecar: 4 cpu.
    assert pod_requests(spec) == {"cpu": "4", "memory": "2Gi"}


def test_overhead_comes_on_top_and_pod_level_resources_replace_the_sum() -> None:
    spec = {
        "containers": [container({"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": 1})],
        "overhead": {"cpu": "250m", "memory": "120Mi"},
    }
    assert pod_requests(spec) == {"cpu": "1250m", "memory": "1144Mi", "nvidia.com/gpu": "1"}
    spec["resources"] = {"limits": {"cpu": "8"}, "requests": {"memory": "16Gi"}}
    assert pod_requests(spec) == {"cpu": "8250m", "memory": "16504Mi", "nvidia.com/gpu": "1"}


def test_zero_and_unreadable_requests_are_left_out() -> None:
    spec = {"containers": [container({"cpu": "0", "memory": "lots", "nvidia.com/gpu": "-1"})]}
    assert pod_requests(spec) == {}
    assert pod_requests({"containers": "not a list"}) == {}
    assert pod_requests({}) == {}


def test_canonical_quantities() -> None:
    assert format_quantity(Decimal("1.5")) == "1500m"
    assert format_quantity(Decimal("0.0001")) == "1m"  # rounded up, as the API server does
    assert format_quantity(Decimal(2**31)) == "2Gi"
    assert format_quantity(Decimal(10**9)) == "1000000000"
    assert format_quantity(Decimal(8)) == "8"
    assert format_quantity(Decimal(1024)) == "1024"  # a count, not a size
    assert pod_requests({"containers": [container({"memory": "2048Mi"})]}) == {"memory": "2Gi"}


@given(st.integers(min_value=0, max_value=2**60), st.integers(min_value=0, max_value=3))
def test_canonical_text_reads_back_as_the_same_amount(units: int, scale: int) -> None:
    amount = Decimal(units) / (10**scale)
    assert quantity(format_quantity(amount)) == amount.quantize(Decimal("0.001"), "ROUND_CEILING")


def test_smaller_requests_per_resource() -> None:
    assert smaller_requests(
        {"cpu": "4", "memory": "1Gi", "nvidia.com/gpu": "8"},
        {"cpu": "500m", "memory": "2Gi"},
    ) == {"cpu": "500m", "memory": "1Gi"}


def profile(seen: str, requests: dict[str, str] | None) -> PlacementProfile:
    out = PlacementProfile(
        nodeSelector={"nvidia.com/gpu.present": "true"},
        requiredNodeAffinity=[],
        tolerations=[],
        gpu=True,
        namespace="ml",
        ownerKind="Job",
        lastSeen=seen,
    )
    if requests is not None:
        out["requests"] = requests
    return out


def test_profiles_that_differ_only_in_requests_merge_to_the_smaller_pod() -> None:
    big = profile("2026-01-02T00:00:00Z", {"cpu": "32", "nvidia.com/gpu": "8"})
    small = profile("2026-01-01T00:00:00Z", {"cpu": "4", "nvidia.com/gpu": "1"})
    assert merge_profiles([small], [big]) == [
        profile("2026-01-02T00:00:00Z", {"cpu": "4", "nvidia.com/gpu": "1"})
    ]
    # Neither input is changed: the webhook keeps its sightings as they are.
    assert big["requests"] == {"cpu": "32", "nvidia.com/gpu": "8"}
    # A pod that requests nothing fits anywhere: the merged profile then requests nothing.
    assert merge_profiles([big], [profile("2026-01-03T00:00:00Z", {})]) == [
        profile("2026-01-03T00:00:00Z", {})
    ]


def test_a_profile_written_before_requests_were_learned_takes_the_first_learned_ones() -> None:
    old = profile("2026-01-01T00:00:00Z", None)
    seen = profile("2026-01-02T00:00:00Z", {"nvidia.com/gpu": "8"})
    assert merge_profiles([old], [seen]) == [seen]
    assert merge_profiles([seen], [old]) == [seen]
    assert merge_profiles([old], [profile("2026-01-03T00:00:00Z", None)]) == [
        profile("2026-01-03T00:00:00Z", None)
    ]


def test_profile_from_pod_records_the_effective_requests() -> None:
    pod = {
        "spec": {
            "initContainers": [container({"cpu": "8"})],
            "containers": [container({"cpu": "2", "memory": "8Gi"}, {"nvidia.com/gpu": "4"})],
        }
    }
    assert profile_from_pod(pod, "ml")["requests"] == {
        "cpu": "8",
        "memory": "8Gi",
        "nvidia.com/gpu": "4",
    }
    assert profile_from_pod({"spec": {"containers": [{"name": "a"}]}}, "ml")["requests"] == {}

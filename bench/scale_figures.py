"""The yardsticks of the end-to-end scale bench: floors, minimum writes and growth with size.

Pure arithmetic, kept apart from the run so that a test can check each one computes what the
bench says it does: the physical floor of a time (bytes ÷ the bandwidth the caps allow), the
fewest API writes a prefetcher could converge with, and how a figure grows with the size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PullCaps:
    """The prefetcher's pull caps (pullers at once): cluster-wide, per registry, per image."""

    concurrent: int
    per_registry: int
    per_image: int


@dataclass(frozen=True)
class CoverageFloor:
    """The least simulated time to put every image on every node, and what sets it."""

    seconds: float
    bound_by: str  # "registry bandwidth", "node bandwidth", "pull caps" or "one image's cap"


def coverage_floor(
    image_bytes: Sequence[int],
    nodes: int,
    node_bandwidth: float,
    registry_bandwidth: float,
    caps: PullCaps,
    round_trip: float = 0.0,
) -> CoverageFloor:
    """Every image on every node, all from one registry, in the least time physics allows.

    Bandwidths in bytes per second. Pulls in flight share the registry's bandwidth, each at
    most its node's: with k pulls in flight the cluster moves min(registry, k x node) bytes a
    second, and k is at most the nodes and the pull caps. A node pulls one image at a time,
    so it needs its own bytes ÷ its bandwidth; an image capped at `per_image` pullers needs
    its bytes x nodes ÷ (cap x node bandwidth). With `round_trip`, a node also waits that
    long for the registry's answer before each image's bytes (a wait that uses no
    bandwidth, so the registry's own bound is unchanged).
    """
    if nodes <= 0 or not image_bytes:
        return CoverageFloor(0.0, "nothing to pull")
    per_node = sum(image_bytes)
    in_flight = min(nodes, caps.concurrent, caps.per_registry)
    aggregate = min(registry_bandwidth, in_flight * node_bandwidth)
    if registry_bandwidth <= in_flight * node_bandwidth:
        aggregate_reason = "registry bandwidth"
    elif in_flight < nodes:
        aggregate_reason = "pull caps"
    else:
        aggregate_reason = "node bandwidth"
    waits = round_trip * len(image_bytes)
    node_reason = "node bandwidth and round trips" if round_trip else "node bandwidth"
    largest = max(image_bytes) / node_bandwidth + round_trip
    candidates = [
        (per_node * nodes / aggregate, aggregate_reason),
        (per_node / min(node_bandwidth, registry_bandwidth) + waits, node_reason),
        (largest * nodes / min(caps.per_image, nodes), "one image's cap"),
    ]
    seconds, reason = max(candidates, key=lambda c: c[0])
    return CoverageFloor(seconds, reason)


def join_floor(
    image_bytes: Sequence[int],
    node_bandwidth: float,
    registry_bandwidth: float,
    round_trip: float = 0.0,
) -> float:
    """A node joining a converged cluster: its bytes at its own bandwidth (the registry idle);
    with `round_trip`, plus that many seconds per image (the registry's answer before the
    first byte: a kubelet that pulls one image at a time waits for each)."""
    return sum(image_bytes) / min(node_bandwidth, registry_bandwidth) + round_trip * len(
        image_bytes
    )


@dataclass(frozen=True)
class MinimumWrites:
    """The fewest pod writes that converge an empty cluster: each puller pulls `pullBatchSize`
    images and is created and deleted once; each node gets one keeper, never replaced."""

    pullers: int
    keepers: int

    @property
    def total(self) -> int:
        return 2 * self.pullers + self.keepers


def minimum_writes(
    nodes: int, images_per_registry: Sequence[int], batch_size: int
) -> MinimumWrites:
    """A puller pulls from one registry only, so each registry's images are batched apart."""
    per_node = sum(math.ceil(count / batch_size) for count in images_per_registry if count > 0)
    return MinimumWrites(pullers=nodes * per_node, keepers=nodes if per_node else 0)


def growth_exponent(small_size: float, small: float, large_size: float, large: float) -> float:
    """k in figure ∝ size^k between two sizes: 0 is constant, 1 proportional, 2 quadratic."""
    if small <= 0 or large <= 0 or small_size <= 0 or large_size <= small_size:
        return math.nan
    return math.log(large / small) / math.log(large_size / small_size)


def describe_growth(exponent: float) -> str:
    """The growth law a measured exponent is closest to, in words."""
    if math.isnan(exponent):
        return "n/a"
    for bound, words in (
        (0.2, "about constant"),
        (0.7, "sublinear"),
        (1.25, "about linear"),
        (1.75, "superlinear"),
    ):
        if exponent < bound:
            return f"{words} (x^{exponent:.2f})"
    return f"about quadratic or worse (x^{exponent:.2f})"

"""The scale bench's yardsticks compute what the bench says they do."""

from __future__ import annotations

import math

import pytest

from bench.scale_figures import (
    PullCaps,
    coverage_floor,
    describe_growth,
    growth_exponent,
    join_floor,
    minimum_writes,
)

GB = 1_000_000_000
OPEN = PullCaps(10_000, 10_000, 10_000)


def test_the_registry_bounds_a_large_fleet() -> None:
    # 1,000 nodes at 1 GB/s could take 1 TB/s; a 50 GB/s registry cannot: 1,000 x 5 GB / 50 GB/s.
    floor = coverage_floor([2 * GB, 3 * GB], 1000, 1 * GB, 50 * GB, OPEN)
    assert floor.seconds == pytest.approx(100.0)
    assert floor.bound_by == "registry bandwidth"


def test_the_nodes_bound_a_small_fleet() -> None:
    # 10 nodes at 1 GB/s under a 50 GB/s registry: each node needs its 5 GB at 1 GB/s.
    floor = coverage_floor([2 * GB, 3 * GB], 10, 1 * GB, 50 * GB, OPEN)
    assert floor.seconds == pytest.approx(5.0)
    assert floor.bound_by == "node bandwidth"


def test_pull_caps_bound_the_pulls_in_flight() -> None:
    # 100 nodes, but only 10 pullers at once: 10 GB/s for 500 GB.
    floor = coverage_floor([2 * GB, 3 * GB], 100, 1 * GB, 50 * GB, PullCaps(10, 20, 100))
    assert floor.seconds == pytest.approx(50.0)
    assert floor.bound_by == "pull caps"


def test_a_per_image_cap_bounds_its_largest_image() -> None:
    # 100 nodes, each image pulled by at most 2 nodes at once: the 3 GB image alone needs
    # 100 x 3 GB at 2 GB/s.
    floor = coverage_floor([2 * GB, 3 * GB], 100, 1 * GB, 50 * GB, PullCaps(100, 100, 2))
    assert floor.seconds == pytest.approx(150.0)
    assert floor.bound_by == "one image's cap"


def test_round_trips_add_to_a_nodes_own_floor_not_to_the_registrys() -> None:
    # 10 nodes: each waits 2 x 0.5 s for the registry's answers on top of its 5 GB at 1 GB/s.
    floor = coverage_floor([2 * GB, 3 * GB], 10, 1 * GB, 50 * GB, OPEN, round_trip=0.5)
    assert floor.seconds == pytest.approx(6.0)
    assert floor.bound_by == "node bandwidth and round trips"
    # 1,000 nodes: the registry's bytes still bound it; waiting for answers uses no bandwidth.
    floor = coverage_floor([2 * GB, 3 * GB], 1000, 1 * GB, 50 * GB, OPEN, round_trip=0.5)
    assert floor.seconds == pytest.approx(100.0)
    assert floor.bound_by == "registry bandwidth"


def test_nothing_to_pull_has_no_floor() -> None:
    assert coverage_floor([], 10, GB, GB, OPEN).seconds == 0.0


def test_a_joining_node_pulls_its_bytes_at_its_own_bandwidth() -> None:
    assert join_floor([2 * GB, 3 * GB], 1 * GB, 50 * GB) == pytest.approx(5.0)
    assert join_floor([2 * GB, 3 * GB], 1 * GB, GB / 2) == pytest.approx(10.0)
    # A serialized kubelet also waits for the registry's answer before each image's bytes.
    assert join_floor([2 * GB, 3 * GB], 1 * GB, 50 * GB, round_trip=0.3) == pytest.approx(5.6)


def test_minimum_writes_batch_each_registry_apart() -> None:
    # 25 images at 10 a puller: 3 pullers; 5 more from another registry: 1 more. Each
    # created and deleted once, one keeper per node.
    minimum = minimum_writes(100, [25, 5], 10)
    assert (minimum.pullers, minimum.keepers) == (400, 100)
    assert minimum.total == 2 * 400 + 100


def test_no_images_need_no_writes() -> None:
    assert minimum_writes(100, [0], 10).total == 0


@pytest.mark.parametrize(
    ("factor", "exponent", "words"),
    [(1.0, 0.0, "about constant"), (10.0, 1.0, "about linear"), (100.0, 2.0, "quadratic")],
)
def test_growth_exponent_reads_the_power_law(factor: float, exponent: float, words: str) -> None:
    # From 2,000 to 200,000 pairs (x100): a figure that grows by `factor`.
    k = growth_exponent(2_000, 3.0, 200_000, 3.0 * factor)
    assert k == pytest.approx(exponent / 2)
    assert words in describe_growth(growth_exponent(2_000, 1.0, 20_000, factor))


def test_growth_without_two_positive_figures_is_unknown() -> None:
    assert math.isnan(growth_exponent(10, 0.0, 100, 5.0))
    assert describe_growth(math.nan) == "n/a"

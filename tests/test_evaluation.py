"""The evaluation's metric functions: the figures in docs/evaluation.md rest on these."""

from __future__ import annotations

import math

import pytest

from simulator.outcomes import (
    Interval,
    PodOutcome,
    cumulative_hit_rate,
    fmt_bytes,
    fmt_seconds,
    fmt_share,
    hit_rate,
    hit_rate_over_time,
    peak_concurrency,
    percentile,
    spread,
    time_to_warm,
    warmup_curve,
)


def pod(name: str, bound_at: float, hit: bool, wait: float = 0.0) -> PodOutcome:
    return PodOutcome(name=name, node="n1", bound_at=bound_at, image_wait=wait, hit=hit)


def test_hit_rate_counts_pods_with_every_image_present() -> None:
    pods = [pod("a", 0, True), pod("b", 1, False, 300), pod("c", 2, True), pod("d", 3, True)]
    assert hit_rate(pods) == 0.75
    assert math.isnan(hit_rate([]))


def test_percentile_interpolates_between_ranks() -> None:
    values = [10.0, 0.0, 30.0, 20.0]
    assert percentile(values, 0) == 0.0
    assert percentile(values, 100) == 30.0
    assert percentile(values, 50) == 15.0
    assert percentile(values, 95) == pytest.approx(28.5)
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_percentile_of_mostly_hits_is_zero_until_the_tail() -> None:
    waits = [0.0] * 90 + [334.0] * 10
    assert percentile(waits, 50) == 0.0
    assert percentile(waits, 95) == 334.0


def test_peak_concurrency_counts_overlaps_not_back_to_back_spans() -> None:
    assert peak_concurrency([]) == 0
    assert peak_concurrency([Interval(0, 10)]) == 1
    assert peak_concurrency([Interval(0, 10), Interval(10, 20)]) == 1
    assert peak_concurrency([Interval(0, 10), Interval(5, 15), Interval(9, 11)]) == 3
    assert peak_concurrency([Interval(0, 10), Interval(5, 15), Interval(10, 12)]) == 2
    assert peak_concurrency([Interval(3, 3)]) == 0
    with pytest.raises(ValueError):
        peak_concurrency([Interval(5, 1)])


def test_hit_rate_over_time_buckets_by_bind_time() -> None:
    pods = [pod("a", 1, False), pod("b", 9, True), pod("c", 25, True), pod("d", 29, True)]
    assert hit_rate_over_time(pods, 10) == [(0.0, 0.5), (20.0, 1.0)]
    assert hit_rate_over_time([], 10) == []
    with pytest.raises(ValueError):
        hit_rate_over_time(pods, 0)


def test_cumulative_hit_rate_follows_bind_order() -> None:
    pods = [pod("b", 20, True), pod("a", 10, False), pod("c", 30, True)]
    assert cumulative_hit_rate(pods) == [(10, 0.0), (20, 0.5), (30, 2 / 3)]
    assert cumulative_hit_rate([]) == []


def test_warmup_curve_and_time_to_warm() -> None:
    arrivals = [130.0, 110.0, 170.0]
    assert warmup_curve(100.0, arrivals, 4) == [
        (0.0, 0.0),
        (10.0, 0.25),
        (30.0, 0.5),
        (70.0, 0.75),
    ]
    assert time_to_warm(100.0, arrivals, 4) is None
    assert time_to_warm(100.0, arrivals, 3) == 70.0
    assert time_to_warm(100.0, [], 0) == 0.0
    assert warmup_curve(100.0, [], 0) == [(0.0, 1.0)]


def test_formatting_for_the_table() -> None:
    assert fmt_seconds(0.0) == "0 s"
    assert fmt_seconds(4.23) == "4.2 s"
    assert fmt_seconds(334.0) == "5.6 min"
    assert fmt_seconds(None) == "-"
    assert fmt_seconds(math.nan) == "-"
    assert fmt_bytes(9.5e9) == "9.5 GB"
    assert fmt_bytes(512) == "512 B"
    assert fmt_share(0.625) == "62 %"
    assert fmt_share(math.nan) == "-"


def test_spread_of_repeated_runs() -> None:
    assert spread([0.7, 0.5, 0.6]) == (0.6, 0.5, 0.7)
    assert spread([1.0, 3.0]) == (2.0, 1.0, 3.0)
    assert spread([math.nan, 2.0]) == (2.0, 2.0, 2.0)
    assert all(math.isnan(v) for v in spread([]))


def test_plots_of_a_users_scenario_never_go_to_docs(tmp_path) -> None:
    from bench.evaluate import HERE, plot_dir

    docs = HERE.parent / "docs" / "img"
    assert plot_dir(["gpu-day", "mixed"], None, tmp_path) == docs
    mine = str(tmp_path / "mine.yaml")
    assert plot_dir([mine], None, tmp_path) == tmp_path / "evaluation-img"
    assert plot_dir(["gpu-day", mine], str(tmp_path / "out" / "run.json"), tmp_path) == (
        tmp_path / "out" / "run-img"
    )


def test_scheduling_lag_flags_a_simulator_that_fell_behind() -> None:
    from simulator.outcomes import LAG_FLOOR_SECONDS, scheduling_lag

    steady = scheduling_lag([1.0, 2.0, 3.0, 12.0], pace=12.0)  # 120x clock, 0.1 s ticks
    assert steady.bound == 36.0 and not steady.behind
    slow = scheduling_lag([1.0, 30.0, 120.0, 150.0], pace=12.0)
    assert slow.behind
    assert "fell behind" in slow.warning("gpu-day/image-sync#1")
    # A slow clock still allows the floor (creation timestamps have one-second resolution).
    assert scheduling_lag([5.0], pace=0.1).bound == LAG_FLOOR_SECONDS
    assert not scheduling_lag([], pace=1.0).behind

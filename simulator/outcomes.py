"""What a replay measured, as pure functions, so the numbers in the docs can be unit-tested.

Everything here works on plain records (seconds on the simulated clock, byte counts) taken
from a finished run; nothing talks to the simulator, so the same functions serve the demo's
summary and `bench/evaluate.py`'s table (which build on the simulator, never the reverse).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# A pod counts as a cache hit when it waited at most this long for its images: the simulated
# kubelet may charge a manifest check for `Always` even when every layer is present.
HIT_WAIT_SECONDS = 1.0


@dataclass(frozen=True)
class PodOutcome:
    """One workload pod of a run: where and when it was bound, and what it waited for."""

    name: str
    node: str
    bound_at: float
    image_wait: float | None
    hit: bool
    started: bool = True


@dataclass(frozen=True)
class SchedulingLag:
    """How far binding fell behind pod creation, among pods that never waited for room.

    A pod that the scheduler found no room for waits legitimately; any other pod should be
    bound within a scheduler round (`pace`). When the simulator's processes cannot keep up
    with the clock (a busy machine, a fast clock), this lag grows and every wait measured
    after it is bent, differently per policy: the run's figures cannot be trusted."""

    pods: int
    p50: float
    p95: float
    pace: float  # simulated seconds one scheduler round may take

    @property
    def bound(self) -> float:
        """The p95 beyond which a run is reported as fallen behind."""
        return max(LAG_FLOOR_SECONDS, LAG_ROUNDS * self.pace)

    @property
    def behind(self) -> bool:
        return self.p95 > self.bound

    def warning(self, label: str) -> str:
        return (
            f"{label}: the simulator fell behind: pods that had room waited {self.p95:.0f} s "
            f"(p95, median {self.p50:.0f} s) to be bound, against {self.bound:.0f} s allowed "
            "at this clock; its waits are bent. Run again with a slower --speed, or use the "
            "virtual-time evaluation."
        )


# Scheduling lag allowed: LAG_ROUNDS scheduler rounds, and never less than the floor (the
# API server's creation timestamps have a resolution of one second).
LAG_ROUNDS = 3
LAG_FLOOR_SECONDS = 10.0


def scheduling_lag(delays: Sequence[float], pace: float) -> SchedulingLag:
    """`delays`: creation → bound (simulated seconds) of pods never reported unschedulable."""
    return SchedulingLag(len(delays), percentile(delays, 50), percentile(delays, 95), pace)


@dataclass(frozen=True)
class Interval:
    """A span of simulated time, e.g. one registry pull; `end` is exclusive."""

    start: float
    end: float


def hit_rate(outcomes: Iterable[PodOutcome]) -> float:
    """Share of pods whose images were all on the node when they were bound (NaN: no pods)."""
    items = list(outcomes)
    if not items:
        return math.nan
    return sum(1 for item in items if item.hit) / len(items)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0 to 100) with linear interpolation between ranks; NaN when empty.

    Linear interpolation (numpy's default) keeps small samples honest: p95 of 20 waits
    lies between the two largest instead of jumping to the maximum.
    """
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be between 0 and 100, got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    fraction = rank - low
    return float(ordered[low] + (ordered[high] - ordered[low]) * fraction)


def peak_concurrency(intervals: Iterable[Interval]) -> int:
    """Most intervals open at one instant; one ending when another starts does not overlap."""
    events: list[tuple[float, int]] = []
    for interval in intervals:
        if interval.end < interval.start:
            raise ValueError(f"interval ends before it starts: {interval}")
        if interval.end == interval.start:
            continue
        events.append((interval.start, 1))
        events.append((interval.end, -1))
    # At equal times the -1 sorts first, so back-to-back pulls count once.
    events.sort()
    current = peak = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def hit_rate_over_time(
    outcomes: Iterable[PodOutcome], window: float, *, end: float | None = None
) -> list[tuple[float, float]]:
    """Hit rate per window of bound times: `(window start, rate)`; windows with no pods skipped."""
    if window <= 0:
        raise ValueError(f"window must be positive, got {window}")
    items = sorted(outcomes, key=lambda item: item.bound_at)
    if not items:
        return []
    last = items[-1].bound_at if end is None else end
    buckets: dict[int, list[bool]] = {}
    for item in items:
        if item.bound_at > last:
            continue
        buckets.setdefault(int(item.bound_at // window), []).append(item.hit)
    return [
        (index * window, sum(hits) / len(hits)) for index, hits in sorted(buckets.items()) if hits
    ]


def warmup_curve(
    joined_at: float, present_at: Iterable[float], wanted: int
) -> list[tuple[float, float]]:
    """A new node's share of wanted images present against seconds since it joined.

    `present_at` holds, per wanted image that arrived, the moment it did; the curve starts at
    `(0, 0)` and steps up at each arrival.
    """
    if wanted <= 0:
        return [(0.0, 1.0)]
    curve = [(0.0, 0.0)]
    for count, moment in enumerate(sorted(present_at), start=1):
        curve.append((max(0.0, moment - joined_at), min(1.0, count / wanted)))
    return curve


def time_to_warm(joined_at: float, present_at: Iterable[float], wanted: int) -> float | None:
    """Seconds from joining until every wanted image was present; None if it never got there."""
    moments = sorted(present_at)
    if wanted <= 0:
        return 0.0
    if len(moments) < wanted:
        return None
    return max(0.0, moments[wanted - 1] - joined_at)


def fmt_seconds(value: float | None) -> str:
    """Waits in the table: `0 s`, `4.2 s`, `5.6 min`; a hyphen for no data."""
    if value is None or math.isnan(value):
        return "-"
    if value >= 120:
        return f"{value / 60:.1f} min"
    if value >= 10 or value == 0:
        return f"{value:.0f} s"
    return f"{value:.1f} s"


def fmt_bytes(value: float) -> str:
    """Decimal units, as registries and the design's image sizes are quoted (9.5 GB)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= size:
            return f"{value / size:.1f} {unit}"
    return f"{value:.0f} B"


def fmt_share(value: float) -> str:
    """A share as a whole percentage; a hyphen for no data."""
    if math.isnan(value):
        return "-"
    return f"{value * 100:.0f} %"


def cumulative_hit_rate(outcomes: Iterable[PodOutcome]) -> list[tuple[float, float]]:
    """Hit rate of all pods bound so far, at each bind: `(bound_at, rate)`, in time order."""
    curve: list[tuple[float, float]] = []
    hits = 0
    for count, item in enumerate(sorted(outcomes, key=lambda o: o.bound_at), start=1):
        hits += item.hit
        curve.append((item.bound_at, hits / count))
    return curve


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """Median, lowest and highest of repeated runs' figures (NaN for none), for `--repeat`."""
    finite = sorted(v for v in values if not math.isnan(v))
    if not finite:
        return (math.nan, math.nan, math.nan)
    return (percentile(finite, 50), finite[0], finite[-1])

"""The figures of one size of the end-to-end scale bench, gathered phase by phase as JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SizeResult:
    """Every figure of one size, as JSON for the command that runs all sizes."""

    nodes: int
    images: int
    speed: float
    sweep_interval: float
    load_before: tuple[float, float, float]
    covered: bool = False
    coverage: float = 0.0
    converge_wall: float = 0.0
    converge_simulated: float = 0.0
    floor: float = 0.0
    floor_bound_by: str = ""
    floor_round_trips: float = 0.0  # the floor plus the registry's answer before each image
    floor_round_trips_bound_by: str = ""
    prefetcher_cpu: float = 0.0
    startup_cpu: float = 0.0
    simulator_cpu: float = 0.0
    passes: int = 0
    plan_median: float = 0.0
    plan_cpu_median: float | None = None  # the planning thread's CPU seconds, median
    plan_max: float = 0.0
    converge_actions: dict[str, int] = field(default_factory=dict)
    converge_requests: dict[str, int] = field(default_factory=dict)
    minimum_pullers: int = 0
    minimum_keepers: int = 0
    steady_requests: dict[str, int] | None = None
    steady_actions: dict[str, int] | None = None
    sweep_plan: float | None = None
    sweep_plan_cpu: float | None = None  # the planning thread's CPU seconds
    sweep_plan_others: float | None = None  # the other threads' CPU seconds meanwhile
    sweep_seconds: float | None = None
    join_simulated: float | None = None
    join_floor: float = 0.0
    join_floor_round_trips: float = 0.0
    join_plan: float | None = None
    join_metric: float | None = None
    join_actions: dict[str, int] | None = None
    new_image_plan: float | None = None
    new_image_plan_cpu: float | None = None
    new_image_plan_others: float | None = None
    report_seconds: list[float] = field(default_factory=list)
    report_bytes: int = 0
    page_seconds: float | None = None
    page_bytes: int = 0
    rss_mib: float = 0.0
    peak_rss_mib: float = 0.0
    simulator_peak_rss_mib: float = 0.0
    total_wall: float = 0.0
    total_prefetcher_cpu: float = 0.0
    total_simulator_cpu: float = 0.0
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    profiles: dict[str, Any] = field(default_factory=dict)
    heap: str = ""  # with --heap: the prefetcher's live allocations after converging
    heap_converging: str = ""  # with --heap: the same while converging (pullers cached)
    notes: list[str] = field(default_factory=list)

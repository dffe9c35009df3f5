"""The running prefetcher's plan times, read from its pass log, next to their targets.

Each pass logs its plan's wall time, the planning thread's own CPU, the CPU the process's
other threads used meanwhile, and the seconds of its snapshot of the caches and of preparing
its report (`prefetcher/steptime.py`). The plan's own CPU does not depend on the machine's
load (the wall time does), so it is the figure to hold against a target on a shared machine.
"""

from __future__ import annotations

import pstats
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.prefetcher_process import PassLine

SWEEP_TARGET = 1.0  # seconds: a full sweep's plan at 1,000 x 200
PASS_TARGET = 0.05  # seconds: a pass for one node joining or one new image


@dataclass(frozen=True)
class PlanTimes:
    """The plan figures of some passes: the median and the largest of each."""

    passes: int
    wall: tuple[float, float]
    cpu: tuple[float, float]
    others: tuple[float, float]
    snapshot: tuple[float, float]
    report: tuple[float, float]


def _spread(values: Sequence[float | None]) -> tuple[float, float]:
    known = [v for v in values if v is not None]
    return (statistics.median(known), max(known)) if known else (0.0, 0.0)


def plan_times(passes: Sequence[PassLine]) -> PlanTimes:
    return PlanTimes(
        passes=len(passes),
        wall=_spread([p.plan for p in passes]),
        cpu=_spread([p.plan_cpu for p in passes]),
        others=_spread([p.plan_others for p in passes]),
        snapshot=_spread([p.snapshot for p in passes]),
        report=_spread([p.report for p in passes]),
    )


def _ms(value: float) -> str:
    return f"{value * 1e3:.0f} ms" if value < 10 else f"{value:.1f} s"


def describe(times: PlanTimes, target: float | None = None) -> str:
    """One pass: `plan W (C CPU, O other threads), snapshot S, report R [target T]`; several:
    the median and the largest of each."""
    if not times.passes:
        return "no pass"
    mark = ""
    if target is not None:
        met = "met" if times.cpu[1] <= target else "missed"
        mark = f"   target {_ms(target)}: {met} by its CPU"
    if times.passes == 1:
        return (
            f"plan {_ms(times.wall[1])} ({_ms(times.cpu[1])} CPU, {_ms(times.others[1])} other "
            f"threads), snapshot {_ms(times.snapshot[1])}, report {_ms(times.report[1])}{mark}"
        )

    def pair(spread: tuple[float, float]) -> str:
        return f"{_ms(spread[0])} / {_ms(spread[1])}"

    return (
        f"{times.passes} passes, median / largest: plan {pair(times.wall)} "
        f"(CPU {pair(times.cpu)}, other threads {pair(times.others)}), "
        f"snapshot {pair(times.snapshot)}, report {pair(times.report)}{mark}"
    )


def profile_lines(path: Path, top: int = 12) -> list[str]:
    """The functions of a plan's cProfile that took the most of it, by their own time and
    with what they called (cProfile about doubles a plan's CPU: compare shares)."""
    if not path.exists():
        return [f"    no profile at {path}"]
    stats = pstats.Stats(str(path))
    total = stats.total_tt or 1.0  # type: ignore[attr-defined]
    rows = sorted(
        stats.stats.items(),  # type: ignore[attr-defined]
        key=lambda item: -item[1][2],
    )[:top]
    lines = [f"    profiled: {total * 1e3:.0f} ms; by own time (own, with callees, calls):"]
    for (filename, line, function), (_, calls, own, cumulative, _) in rows:
        where = f"{Path(filename).parent.name}/{Path(filename).name}:{line}" if line else ""
        lines.append(
            f"    {own / total:6.1%} {cumulative / total:6.1%} {calls:8d}  {function} {where}"
        )
    return lines

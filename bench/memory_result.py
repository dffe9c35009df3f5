"""What the memory bench measured (bench/memory_scale.py): each step's figures, and the summary."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.pass_times import PlanTimes, describe

TARGET_MIB = 300.0  # at 1,000 nodes x 200 images, the whole cluster cached


@dataclass
class Step:
    """The prefetcher's memory and CPU after one step."""

    name: str
    wall: float
    rss_mib: float
    peak_mib: float  # during the step (since the start when the peak cannot be reset)
    cpu: float
    pods: dict[str, int]
    coverage: float
    passes: int
    malloc: str  # what malloc holds: in use, free, mapped
    plans: PlanTimes | None = None  # the plan figures of the step's passes (see bench/pass_times)


@dataclass
class Result:
    """Every figure of one run, as JSON with --json."""

    nodes: int
    images: int
    load_before: tuple[float, float, float]
    steps: list[Step] = field(default_factory=list)
    report_seconds: float = 0.0
    report_bytes: int = 0
    report_all_seconds: float = 0.0  # /report?pairs=all: every pair
    report_all_bytes: int = 0
    # The pass a change makes (the sweep, a node joining, a new image, ...): its plan figures.
    plans: dict[str, PlanTimes] = field(default_factory=dict)
    targets: dict[str, float] = field(default_factory=dict)  # seconds, by the same names
    page_seconds: float = 0.0
    page_bytes: int = 0
    actions: dict[str, float] = field(default_factory=dict)
    heap: dict[str, str] = field(default_factory=dict)
    peak_resets: bool = True
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    wall: float = 0.0


def summary(result: Result) -> str:
    converged = [s for s in result.steps if s.name.startswith(("5", "6", "7"))]
    rss = max((s.rss_mib for s in converged), default=0.0)
    peak = max((s.peak_mib for s in result.steps), default=0.0)
    target = (
        f" (target {TARGET_MIB:.0f} MiB)" if (result.nodes, result.images) == (1000, 200) else ""
    )
    reached = [  # a run with --restart ends before the cluster converges
        f"  RSS converged (after the sweep, /report): {rss:.0f} MiB{target}",
        f"  /report {result.report_seconds * 1e3:.0f} ms, {result.report_bytes / 1e6:.1f} MB"
        f" (target 1 s); ?pairs=all {result.report_all_seconds * 1e3:.0f} ms, "
        f"{result.report_all_bytes / 1e6:.1f} MB; the page {result.page_seconds * 1e3:.0f} ms",
    ]
    return "\n".join(
        [
            f"  peak (VmHWM): {peak:.0f} MiB"
            + ("" if result.peak_resets else " (could not reset: since the start)"),
            *(reached if converged else []),
            *(
                f"  {name}: {describe(times, result.targets.get(name))}"
                for name, times in result.plans.items()
            ),
            f"  writes: { {k: int(v) for k, v in sorted(result.actions.items())} }",
            f"  wall {result.wall:.0f}s, load {result.load_before[0]:.1f} before, "
            f"{result.load_after[0]:.1f} after",
        ]
    )

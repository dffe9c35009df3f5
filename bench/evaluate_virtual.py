"""The evaluation in virtual time: scenarios replayed under every cache policy by a
discrete-event model (simulator/virtual/), with the real planner, no wall clock and no threads.

    .venv/bin/python bench/evaluate_virtual.py                 # the 5 short scenarios, ~2 s
    .venv/bin/python bench/evaluate_virtual.py --compare       # ... next to the wall-clock figures
    .venv/bin/python bench/evaluate_virtual.py --week          # the week-long scenario, 2 disk variants
    .venv/bin/python bench/evaluate_virtual.py --week --days 2 --policy image-sync
    .venv/bin/python bench/evaluate_virtual.py --kubelets-cancel-pulls   # kubelets that cancel
    .venv/bin/python bench/evaluate_virtual.py --parallel-pulls 3  # serializeImagePulls: false
    .venv/bin/python bench/evaluate_virtual.py --scoring most-allocated  # a bin-packing scheduler
    .venv/bin/python bench/evaluate_virtual.py --week --days 2 --disk-budget 0.25
    .venv/bin/python bench/evaluate_virtual.py --week --days 3 --variant roomy --seed 2
    .venv/bin/python bench/evaluate_virtual.py --week --days 3 --scheduler-seed 1  # random ties

Same inputs, same numbers, whatever the machine's load. docs/evaluation.md explains the
model, the policies and the comparison with the wall-clock evaluation (bench/evaluate.py).
"""

from __future__ import annotations

import argparse
import functools
import json
import pickle
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.evaluate import SCENARIOS, scenario_path
from bench.week import SEED as WEEK_SEED
from imagesync.config import Config, load_config
from imagesync.matching import parse_prefix
from imagesync.quantities import parse_duration
from simulator.demo import MANAGED_REGISTRIES, load_run_scenario, scenario_extra
from simulator.outcomes import fmt_bytes, fmt_seconds, fmt_share
from simulator.scenario import Scenario
from simulator.scoring import DEFAULT_SCORING, GPU_BIN_PACKING, ScoringStrategy
from simulator.virtual import replay, report, targets
from simulator.virtual.pods import PodSpec
from simulator.virtual.results import RunResult
from simulator.virtual.workload import scenario_pods

# bench/evaluate.py on the wall-clock simulator at 120x, one run per cell, same code as the
# virtual runs (2026-12-07): hit rate, image wait p95 and p99 (seconds), bytes pulled, disk used.
WALL_CLOCK: dict[tuple[str, str], tuple[float, float, float, float, float]] = {
    ("gpu-day", "none"): (0.500, 331, 331, 42.5e9, 95.1e9),
    ("gpu-day", "static-list"): (0.618, 286, 323, 82.7e9, 182.6e9),
    ("gpu-day", "everything"): (0.647, 365, 488, 246.4e9, 569.6e9),
    ("gpu-day", "image-sync"): (0.618, 182, 343, 74.7e9, 173.5e9),
    ("gpu-day", "image-sync+declared"): (0.618, 162, 274, 75.7e9, 176.5e9),
    ("registry-outage", "none"): (0.273, 941, 1108, 27.3e9, 38.8e9),
    ("registry-outage", "static-list"): (0.591, 954, 954, 65.7e9, 142.0e9),
    ("registry-outage", "everything"): (0.591, 950, 950, 107.1e9, 234.2e9),
    ("registry-outage", "image-sync"): (0.636, 526, 564, 35.3e9, 77.0e9),
    ("registry-outage", "image-sync+declared"): (0.727, 314, 514, 35.4e9, 77.3e9),
    ("gpu-burst", "none"): (0.190, 331, 411, 65.3e9, 141.0e9),
    ("gpu-burst", "static-list"): (0.429, 331, 331, 104.2e9, 225.1e9),
    ("gpu-burst", "everything"): (0.286, 389, 568, 351.9e9, 744.1e9),
    ("gpu-burst", "image-sync"): (0.571, 331, 426, 105.3e9, 229.4e9),
    ("gpu-burst", "image-sync+declared"): (0.619, 276, 360, 105.6e9, 230.2e9),
    ("mixed", "none"): (0.500, 295, 331, 46.0e9, 107.6e9),
    ("mixed", "static-list"): (0.735, 200, 411, 117.5e9, 267.0e9),
    ("mixed", "everything"): (0.735, 139, 401, 309.6e9, 505.6e9),
    ("mixed", "image-sync"): (0.618, 182, 373, 86.9e9, 212.4e9),
    ("mixed", "image-sync+declared"): (0.765, 208, 482, 94.1e9, 230.6e9),
}


# The wall-clock evaluation's scenarios, and one whose images' pods run in some pools of
# their eligible nodes and not others (there `placement: demand` differs from `all`).
VIRTUAL_SCENARIOS = (*SCENARIOS, "gpu-pools")


def evaluation_config() -> Config:
    """The defaults, with the registries the evaluation manages (Harbor and nvcr.io/nvidia);
    the environment is ignored so a run is reproducible anywhere."""
    prefixes = tuple(parse_prefix(p) for p in MANAGED_REGISTRIES.split(","))
    return replace(load_config(None, environ={}), registries=prefixes)


def knowing_bandwidths(config: Config, scenario: Scenario) -> Config:
    """image-sync told the scenario's registry bandwidths (`registryBandwidth`)."""
    return replace(config, registry_bandwidth=tuple(scenario.registry_bandwidths().items()))


@dataclass(frozen=True)
class RunSettings:
    """What every run changes: NodeConfig settings for every kubelet, the scheduler's scoring
    strategy (None: the scenario's own), image-sync's (and the oracle's) `diskBudget` and
    image-sync's `budgetHold` (None: the defaults), and the seed of the scheduler's draw
    among equal scores (None: the first node by name)."""

    kubelets: Mapping[str, Any] = field(default_factory=dict)
    scoring: ScoringStrategy | None = None
    disk_budget: float | None = None
    budget_hold: float | None = None
    scheduler_seed: int | None = None

    def applied(self, scenario: Scenario) -> Scenario:
        scenario = scenario.with_kubelets(**self.kubelets)
        if self.scheduler_seed is not None:
            scenario = replace(scenario, scheduler_seed=self.scheduler_seed)
        return scenario if self.scoring is None else replace(scenario, scoring=self.scoring)

    def configured(self, config: Config) -> Config:
        if self.disk_budget is not None:
            config = replace(config, disk_budget=self.disk_budget)
        if self.budget_hold is not None:
            config = replace(config, budget_hold=self.budget_hold)
        return config

    def label(self, scenario: Scenario) -> str:
        """The settings on `scenario` in a file name (its scoring strategy included)."""
        parts = [f"{k}={v}" for k, v in sorted(self.kubelets.items())]
        if self.disk_budget is not None:
            parts.append(f"diskBudget={self.disk_budget:g}")
        if self.budget_hold is not None:
            parts.append(f"budgetHold={self.budget_hold:g}")
        if self.scheduler_seed is not None:
            parts.append(f"schedulerSeed={self.scheduler_seed}")
        return "-".join([*parts, self.applied(scenario).scoring.type])


# --scoring: None keeps each scenario's own.
SCORINGS: dict[str, ScoringStrategy | None] = {
    "scenario": None,
    "least-allocated": DEFAULT_SCORING,
    "most-allocated": GPU_BIN_PACKING,
}


def kubelet_settings(cancelling: bool, parallel: int) -> dict[str, Any]:
    """NodeConfig settings for every kubelet: cancelling deleted pods' pulls, and parallel
    pulls (serializeImagePulls: false, maxParallelImagePulls: `parallel`) when `parallel` > 1."""
    settings: dict[str, Any] = {"cancel_pull_on_delete": cancelling}
    if parallel > 1:
        settings |= {"serialize_image_pulls": False, "max_parallel_image_pulls": parallel}
    return settings


def short_scenarios(
    names: Sequence[str],
    policies: Sequence[str],
    config: Config,
    settings: RunSettings | None = None,
) -> list[RunResult]:
    results = []
    settings = settings or RunSettings()
    for name in names:
        path = scenario_path(name)
        scenario = settings.applied(load_run_scenario(path))
        work = replay.workload(
            scenario, scenario_pods(scenario), scenario_extra(path, "staticList") or []
        )
        configured = knowing_bandwidths(settings.configured(config), scenario)
        results += replay.run_all(work, policies, configured)
    return results


def comparison(results: Sequence[RunResult]) -> str:
    """Virtual against wall-clock, per scenario and policy (wall-clock: median of 3 runs)."""
    lines = [
        "| scenario | policy | hit rate (virtual / wall) | image wait p95 | p99 | bytes pulled | disk used |",
        "|" + " --- |" * 7,
    ]
    for result in results:
        wall = WALL_CLOCK.get((result.scenario, result.policy))
        if wall is None:
            continue
        f = result.figures()
        hit, p95, p99, pulled, disk = wall
        lines.append(
            f"| {result.scenario} | {result.policy} "
            f"| {fmt_share(f['hit_rate'])} / {fmt_share(hit)} "
            f"| {fmt_seconds(f['wait_p95'])} / {fmt_seconds(p95)} "
            f"| {fmt_seconds(f['wait_p99'])} / {fmt_seconds(p99)} "
            f"| {fmt_bytes(f['bytes_pulled'])} / {fmt_bytes(pulled)} "
            f"| {fmt_bytes(f['disk_used'])} / {fmt_bytes(disk)} |"
        )
    return "\n".join(lines)


# CPU seconds of each seven-day run (variant, policy), as measured (docs/evaluation.md,
# "Running time"): the longest runs start first so that the workers finish together.
WEEK_COST = {
    ("tight", "image-sync+demand"): 137,
    ("tight", "image-sync+declared"): 109,
    ("tight", "image-sync"): 99,
    ("roomy", "image-sync+declared"): 85,
    ("roomy", "image-sync+demand"): 80,
    ("tight", "everything"): 67,
    ("roomy", "image-sync"): 59,
    ("roomy", "everything"): 38,
    ("tight", "oracle"): 20,
    ("roomy", "oracle"): 17,
    ("tight", "static-list"): 8,
    ("roomy", "static-list"): 4,
    ("tight", "none"): 3,
    ("roomy", "none"): 2,
}
VARIANTS = ("roomy", "tight")
# What `--week` replays without --policy: the sources' policies are measured on its first day
# apart (docs/evaluation.md, "Where each source pays").
SOURCE_POLICIES = ("image-sync+observed", "image-sync+catalog")
WEEK_POLICIES = tuple(p for p in replay.POLICIES if p not in SOURCE_POLICIES)


@functools.cache
def _week_pods(days: float, seed: int) -> tuple[PodSpec, ...]:
    """The week's pods (generated once per process: every run of a worker replays them)."""
    from bench.week import DAY, week_pods

    return tuple(pod for pod in week_pods(seed) if pod.at < days * DAY)


def week_run(
    variant: str,
    policy: str,
    days: float,
    settings: RunSettings | None = None,
    seed: int = WEEK_SEED,
) -> tuple[RunResult, float]:
    """One policy on the week (or its first `days`, its pods drawn from `seed`), and the CPU
    seconds it took."""
    from bench.week import DAY, static_list, week_scenario

    began = time.process_time()
    settings = settings or RunSettings()
    scenario = settings.applied(week_scenario(variant))
    work = replay.workload(scenario, _week_pods(days, seed), static_list())
    work = replay.Workload(work.scenario, work.pods, days * DAY, work.static_list)
    config = knowing_bandwidths(settings.configured(evaluation_config()), work.scenario)
    result = replay.run(work, policy, config)
    return result, time.process_time() - began


def week(
    policies: Sequence[str],
    days: float,
    workers: int,
    settings: RunSettings | None = None,
    runs_dir: Path | None = None,
    variants: Sequence[str] = VARIANTS,
    seed: int = WEEK_SEED,
) -> tuple[list[RunResult], float]:
    """Every policy on each disk variant, `workers` runs at a time (one per core), the
    longest first; the results in (variant, policy) order, and the CPU seconds they took.

    With `runs_dir`, each finished run is kept there and a run already kept is read back
    instead of replayed: a week that does not fit one sitting is finished in several."""
    jobs = [(variant, policy) for variant in variants for policy in policies]
    done: dict[tuple[str, str], tuple[RunResult, float]] = {}

    def kept(job: tuple[str, str]) -> Path | None:
        if runs_dir is None:
            return None
        from bench.week import week_scenario

        label = (settings or RunSettings()).label(week_scenario(job[0]))
        if seed != WEEK_SEED:
            label += f"-seed={seed}"
        return runs_dir / f"week-{job[0]}-{job[1]}-{days:g}d-{label}.pickle"

    for job in jobs:
        path = kept(job)
        if path is not None and path.exists():
            done[job] = pickle.loads(path.read_bytes())
            print(f"week-{job[0]} / {job[1]}: read from {path}", file=sys.stderr)
    todo = sorted(
        (job for job in jobs if job not in done),
        key=lambda job: -WEEK_COST.get(job, 100),
    )
    began = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(week_run, *job, days, settings, seed): job for job in todo}
        for future in as_completed(futures):
            job = futures[future]
            done[job] = result, cpu = future.result()
            path = kept(job)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(pickle.dumps(done[job]))
            row = report.table([result]).splitlines()[-1]
            wall = time.perf_counter() - began
            print(f"{wall:.0f} s: {cpu:.0f} s of CPU: {row}", file=sys.stderr, flush=True)
    return [done[job][0] for job in jobs], sum(cpu for _, cpu in done.values())


def print_tables(results: Sequence[RunResult]) -> None:
    print(report.table(results))
    print()
    print(report.miss_table(results))
    print()
    print(report.registry_table(results))
    print()
    print(report.sources_table(results))
    print()
    print(targets.table(results))


def share_of_disk(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a share of the disk, 0 to 1, not {text}")
    return value


def policy_name(text: str) -> str:
    if not replay.known_policy(text):
        raise argparse.ArgumentTypeError(f"unknown policy {text!r}")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scenario", action="append", help="scenario name or file (repeatable)")
    parser.add_argument(
        "--policy",
        action="append",
        type=policy_name,
        help=f"{', '.join(replay.POLICIES)} or {replay.CATALOG_ON}PREFIX (repeatable)",
    )
    parser.add_argument("--compare", action="store_true", help="also print virtual vs wall-clock")
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    parser.add_argument("--week", action="store_true", help="the week-long scenario instead")
    parser.add_argument("--days", type=float, default=7.0, help="--week: replay the first N days")
    parser.add_argument(
        "--variant",
        action="append",
        choices=VARIANTS,
        help="--week: replay only this disk variant (repeatable; default both)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=WEEK_SEED,
        help=f"--week: draw the week's pods from this seed (default {WEEK_SEED}); the "
        "cluster, its images and events stay the same",
    )
    parser.add_argument("--workers", type=int, default=2, help="--week: runs in parallel")
    parser.add_argument(
        "--runs-dir",
        type=Path,
        metavar="DIR",
        help="--week: keep each finished run in DIR and read back the runs kept there",
    )
    parser.add_argument(
        "--kubelets-cancel-pulls",
        action="store_true",
        help="kubelets that stop a deleted pod's pull in flight (real ones do not)",
    )
    parser.add_argument(
        "--parallel-pulls",
        type=int,
        default=1,
        metavar="N",
        help="kubelets with serializeImagePulls: false and maxParallelImagePulls: N (N > 1)",
    )
    parser.add_argument(
        "--scoring",
        choices=tuple(SCORINGS),
        default="scenario",
        help="the scheduler's NodeResourcesFit scoring: the scenario's (default; the week "
        "bin-packs), least-allocated (kube-scheduler's default) or most-allocated (cpu, "
        "memory and nvidia.com/gpu weighing 3, as GPU clusters bin-pack)",
    )
    parser.add_argument(
        "--scheduler-seed",
        type=int,
        metavar="N",
        help="the scheduler draws among nodes of equal score with this seed, as kube-scheduler "
        "does (default: the first by name); a few seeds show how much of a tail is the draw",
    )
    parser.add_argument(
        "--disk-budget",
        type=share_of_disk,
        metavar="F",
        help="image-sync's (and the oracle's) diskBudget, 0 to 1 (default: the config's, 0.5)",
    )
    parser.add_argument(
        "--budget-hold",
        type=parse_duration,
        metavar="DURATION",
        help="image-sync's budgetHold, e.g. 6h or 0 (default: the config's, 1d)",
    )
    args = parser.parse_args(argv)
    config = evaluation_config()
    policies = args.policy or (WEEK_POLICIES if args.week else replay.POLICIES)
    began, began_cpu = time.perf_counter(), time.process_time()
    settings = RunSettings(
        kubelet_settings(args.kubelets_cancel_pulls, args.parallel_pulls),
        SCORINGS[args.scoring],
        args.disk_budget,
        args.budget_hold,
        args.scheduler_seed,
    )
    if args.week:
        workers = max(1, args.workers)
        variants = tuple(args.variant or VARIANTS)
        results, cpu = week(
            policies, args.days, workers, settings, args.runs_dir, variants, args.seed
        )
        where = f"{cpu:.0f} s of CPU in {workers} worker processes"
    else:
        results = short_scenarios(args.scenario or VIRTUAL_SCENARIOS, policies, config, settings)
        where = f"{time.process_time() - began_cpu:.1f} s of CPU"
    wall = time.perf_counter() - began
    print(f"Virtual time; {len(results)} runs in {wall:.1f} s of wall time ({where}).\n")
    print_tables(results)
    if args.compare:
        print()
        print(comparison(results))
    if args.json:
        figures = [r.figures() for r in results]
        Path(args.json).write_text(json.dumps(figures, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

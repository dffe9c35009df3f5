"""The phases of one scale run, each measured from the prefetcher's outside (bench/scale_run.py).

Converging from empty, a converged sweep, a node joining, the report's timings, a new image:
each fills its part of the SizeResult and leaves the rest when the time budget runs out.
"""

from __future__ import annotations

import os
import resource
import signal
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client

from bench.prefetcher_process import (
    PREFIX,
    PassLine,
    PrefetcherProcess,
    actions,
    api_requests,
    delta,
    metric,
    writes,
)
from bench.scale_cluster import declare, image_sizes, new_image
from bench.scale_result import SizeResult
from imagesync.names import COMPONENT_PULLER, LABEL_COMPONENT, POD_NAMESPACE_DEFAULT
from simulator.cluster import SimCluster


def say(text: str) -> None:
    print(text, flush=True)


def poll(condition: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
    """The first truthy value of `condition`, or None after `timeout` wall seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    return None


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_converge(
    result: SizeResult,
    sim: SimCluster,
    prefetcher: PrefetcherProcess,
    floor: float,
    sim_cpu_start: float,
    left: Callable[[], float],
    heap_out: Path | None = None,
    heap_at: float = 0.5,
) -> None:
    """From empty to every image on every node (the prefetcher's coverage metric at 1.0),
    then to the first pass with nothing to write; with `heap_out`, a heap profile once
    coverage reaches `heap_at`, while finished pullers wait for their keepers."""
    last_said = time.monotonic()

    def covered() -> bool:
        nonlocal last_said
        samples = prefetcher.metrics()
        result.coverage = metric(samples, f"{PREFIX}_coverage_ratio")
        if heap_out is not None and result.coverage >= heap_at and not result.heap_converging:
            result.heap_converging = heap_profile(prefetcher, heap_out)
            heap_out.unlink(missing_ok=True)
        now = time.monotonic()
        if now - last_said >= 30:
            last_said = now
            passes = prefetcher.passes()
            say(
                f"    {now - wall_start:4.0f}s wall, {sim.clock.now() - sim_start:5.0f}s simulated: "
                f"coverage {result.coverage:.3f}, pulling "
                f"{metric(samples, f'{PREFIX}_pairs', state='pulling'):.0f} pairs, "
                f"{len(passes)} passes; CPU prefetcher {prefetcher.cpu_seconds():.0f}s, "
                f"simulator {self_cpu_seconds() - sim_cpu_start:.0f}s; load {os.getloadavg()[0]:.1f}"
            )
        return result.coverage >= 1.0

    if not poll(prefetcher.passes, min(120.0, left()), interval=0.1):
        result.notes.append("the prefetcher made no pass in time")
        return
    # The clock starts with the first pass (the log line comes at its end): the process's
    # start and its caches' first lists are not part of converging.
    result.startup_cpu = prefetcher.cpu_seconds()  # imports, first lists, the first pass
    first = prefetcher.passes()[0].seconds
    wall_start = time.monotonic() - first
    sim_start = sim.clock.now() - first * sim.clock.speed
    result.covered = bool(poll(covered, left() - 60, interval=0.5))
    result.converge_simulated = sim.clock.now() - sim_start
    result.converge_wall = time.monotonic() - wall_start
    result.prefetcher_cpu = prefetcher.cpu_seconds()
    result.simulator_cpu = self_cpu_seconds() - sim_cpu_start
    if result.covered:
        say(
            f"  full coverage after {result.converge_wall:.0f}s wall, "
            f"{result.converge_simulated:.0f}s simulated ({result.converge_simulated / floor:.2f}x the floor)"
        )
        # The last pullers' deletions and keeper replacements follow coverage: a converged
        # cluster has none of our pullers left (the sweep and the joining node that follow
        # are measured on it, not beside a thousand deletions).
        core: Any = client.CoreV1Api(sim.api_client())
        selector = f"{LABEL_COMPONENT}={COMPONENT_PULLER}"

        def cleaned_up() -> bool:
            pullers = core.list_namespaced_pod(
                POD_NAMESPACE_DEFAULT, label_selector=selector, limit=1
            )
            return not pullers.items

        # Bounded so that a joining node keeps the time it needs (its floor and a margin).
        keep = 90.0 + 1.5 * result.join_floor_round_trips
        if not poll(cleaned_up, min(180.0, left() - keep), interval=1.0):
            result.notes.append("pullers were still being deleted when the steady phase began")
    else:
        say(f"  coverage {result.coverage:.3f} when the time budget ran out")
    passes = prefetcher.passes()
    plans = [p.plan for p in passes]
    result.passes = len(passes)
    result.plan_median = statistics.median(plans) if plans else 0.0
    result.plan_max = max(plans, default=0.0)
    plans_cpu = [p.plan_cpu for p in passes if p.plan_cpu is not None]
    result.plan_cpu_median = statistics.median(plans_cpu) if plans_cpu else None
    samples = prefetcher.metrics()
    result.converge_actions = delta(actions(samples), {})
    result.converge_requests = delta(api_requests(samples), {})


def heap_profile(prefetcher: PrefetcherProcess, out: Path) -> str:
    """The traced prefetcher's live allocations now (bench/traced_prefetcher.py, SIGUSR2)."""
    prefetcher.process.send_signal(signal.SIGUSR2)
    if not poll(lambda: out.exists() and out.stat().st_size, 300.0, 0.5):
        return "no heap profile within 5 minutes"
    text = out.read_text()
    say(f"  heap of the prefetcher, RSS {prefetcher.memory_kib('VmRSS') / 1024:.0f} MiB:\n{text}")
    return text


def _sweeps(prefetcher: PrefetcherProcess) -> int:
    return sum(p.trigger == "sweep" for p in prefetcher.passes())


def measure_steady(
    result: SizeResult, prefetcher: PrefetcherProcess, left: Callable[[], float]
) -> None:
    """A converged cluster through a sweep (asked for with SIGHUP right after convergence):
    what staying converged costs."""
    samples = prefetcher.metrics()
    before_requests, before_actions = api_requests(samples), actions(samples)
    seen = _sweeps(prefetcher)
    prefetcher.request_sweep()
    if not poll(lambda: _sweeps(prefetcher) > seen, min(120.0, left() - 120), 0.2):
        result.notes.append("no sweep came round in time to check the steady state")
        return
    samples = prefetcher.metrics()
    result.steady_requests = delta(api_requests(samples), before_requests)
    result.steady_actions = delta(actions(samples), before_actions)
    sweep = [p for p in prefetcher.passes() if p.trigger == "sweep"][-1]
    result.sweep_plan, result.sweep_seconds = sweep.plan, sweep.seconds
    result.sweep_plan_cpu, result.sweep_plan_others = sweep.plan_cpu, sweep.plan_others
    say(
        f"  a converged sweep: {writes(result.steady_requests)} writes, requests "
        f"{result.steady_requests}; plan {sweep.plan * 1e3:.0f} ms"
    )


def measure_join(
    result: SizeResult,
    sim: SimCluster,
    prefetcher: PrefetcherProcess,
    left: Callable[[], float],
) -> None:
    """One node joins at real time: from its creation to every wanted image on its disk."""
    sim.clock.set_speed(1.0)
    refs = [ref for ref, _, _ in image_sizes(result.images)]
    passes_before = len(prefetcher.passes())
    actions_before = actions(prefetcher.metrics())
    joined_at = sim.clock.now()
    joined = sim.add_node("cpu")

    def warm() -> bool:
        try:
            store = sim.image_store(joined)
        except KeyError:
            return False
        return all(store.has(ref) for ref in refs)

    if not poll(warm, min(max(60.0, 10 * result.join_floor), left() - 60), 0.05):
        result.notes.append(f"{joined} did not hold its images in time")
        return
    result.join_simulated = sim.clock.now() - joined_at
    join_passes = [p for p in prefetcher.passes()[passes_before:] if "node joined" in p.trigger]
    result.join_plan = join_passes[0].plan if join_passes else None
    poll(lambda: metric(prefetcher.metrics(), f"{PREFIX}_node_warm_seconds_count") >= 1, 30, 0.5)
    samples = prefetcher.metrics()
    result.join_metric = metric(samples, f"{PREFIX}_node_warm_seconds_sum") or None
    # Its pullers are deleted once its keeper holds their images: wait for quiet.
    poll(lambda: prefetcher.passes()[-1].writes == 0, min(60.0, left() - 45), 0.5)
    result.join_actions = delta(actions(prefetcher.metrics()), actions_before)
    say(
        f"  {joined} joined: its images on disk after {result.join_simulated:.1f}s "
        f"(floor {result.join_floor:.1f}s)"
    )


def measure_report(result: SizeResult, prefetcher: PrefetcherProcess) -> None:
    """/report three times (the first after a new plan is the costly one), then the page;
    then the prefetcher's memory with the whole cluster in its caches."""
    for _ in range(3):
        seconds, size = prefetcher.timed_get("/report")
        result.report_seconds.append(seconds)
        result.report_bytes = size
    result.page_seconds, result.page_bytes = prefetcher.timed_get("/")
    result.rss_mib = prefetcher.memory_kib("VmRSS") / 1024
    result.peak_rss_mib = prefetcher.memory_kib("VmHWM") / 1024


def measure_new_image(
    result: SizeResult,
    api: client.ApiClient,
    prefetcher: PrefetcherProcess,
    left: Callable[[], float],
) -> None:
    """A new image is declared: the plan time of the pass it triggers."""
    before = len(prefetcher.passes())
    declare(api, new_image()[0])

    def new_image_pass() -> PassLine | None:
        for line in prefetcher.passes()[before:]:
            if "new image" in line.trigger:
                return line
        return None

    line = poll(new_image_pass, min(60.0, left() - 15), 0.2)
    if line is not None:
        result.new_image_plan = line.plan
        result.new_image_plan_cpu, result.new_image_plan_others = line.plan_cpu, line.plan_others

"""One size of the end-to-end scale bench: a simulated cluster, the real prefetcher, the figures.

The simulated cluster (bench/scale_cluster.py: API server, kubelets, registries) runs in
this process; the prefetcher is the real `image-sync prefetcher` command in a process of its
own, as in a cluster. The run goes through phases, each measured from the outside (the
prefetcher's /metrics, its pass log, /proc, the simulated disks):

1. converge from empty, the simulated clock at `speed` (sized so the floor takes a couple of
   minutes of wall time; never slower than real time);
2. stay converged: the writes of a sweep asked for (SIGHUP) after the first quiet pass;
3. a node joins, at real time (1x), until its images are on its disk;
4. /report and the HTML page are timed; the prefetcher's memory is read;
5. a new image is declared: the plan time of the pass it triggers.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import profiles  # noqa: E402
from bench.prefetcher_process import (  # noqa: E402
    PREFIX,
    PassLine,
    PrefetcherProcess,
    actions,
    api_requests,
    delta,
    metric,
    writes,
)
from bench.scale_cluster import (  # noqa: E402
    JOIN_PULL_BATCH_SIZE,
    NAMESPACE,
    NODE_BANDWIDTH,
    NODE_STATUS_EVERY,
    POD_STATUS_EVERY,
    PULL_BATCH_SIZE,
    REGISTRY,
    REGISTRY_BANDWIDTH,
    REGISTRY_ROUND_TRIP,
    declare,
    heartbeat_wall,
    image_sizes,
    install,
    kubelet_tick,
    new_image,
    scenario,
)
from bench.scale_figures import (  # noqa: E402
    PullCaps,
    coverage_floor,
    join_floor,
    minimum_writes,
)
from prefetcher.memory import ALLOCATOR_ENV  # noqa: E402
from simulator.cluster import SimCluster  # noqa: E402


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


def auto_speed(floor: float, wall: float) -> float:
    """The simulated clock's speed that makes the floor take `wall` seconds, never below 1x:
    the prefetcher's own delays (wall time) then weigh no less than they would in a cluster."""
    return max(1.0, round(floor / wall, 1))


def run_size(
    nodes: int,
    image_count: int,
    *,
    speed: float | None,
    floor_wall: float,
    budget: float,
    profile: bool,
    heap: bool = False,
    heap_at: float = 0.5,
) -> SizeResult:
    """Run one size within `budget` wall seconds; whatever phase the budget ends leaves the
    figures gathered so far."""
    started = time.monotonic()
    deadline = started + budget

    def left() -> float:
        return deadline - time.monotonic()

    images = image_sizes(image_count)
    sizes = [size for _, size, _ in images]
    caps = PullCaps(nodes, nodes, nodes)
    floor = coverage_floor(sizes, nodes, NODE_BANDWIDTH, REGISTRY_BANDWIDTH, caps)
    physical = coverage_floor(
        sizes, nodes, NODE_BANDWIDTH, REGISTRY_BANDWIDTH, caps, REGISTRY_ROUND_TRIP
    )
    speed = speed or auto_speed(floor.seconds, floor_wall)
    # The default sweep interval (30 minutes), as in a cluster: converging is driven by the
    # changes, and the converged sweep is asked for at once with SIGHUP.
    sweep_interval = 1800.0
    # Every node joins at the bench's start, so each takes joinPullBatchSize images a puller.
    minimum = minimum_writes(nodes, [image_count], max(PULL_BATCH_SIZE, JOIN_PULL_BATCH_SIZE))
    result = SizeResult(
        nodes=nodes,
        images=image_count,
        speed=speed,
        sweep_interval=sweep_interval,
        load_before=os.getloadavg(),
        floor=floor.seconds,
        floor_bound_by=floor.bound_by,
        floor_round_trips=physical.seconds,
        floor_round_trips_bound_by=physical.bound_by,
        join_floor=join_floor(sizes, NODE_BANDWIDTH, REGISTRY_BANDWIDTH),
        join_floor_round_trips=join_floor(
            sizes, NODE_BANDWIDTH, REGISTRY_BANDWIDTH, REGISTRY_ROUND_TRIP
        ),
        minimum_pullers=minimum.pullers,
        minimum_keepers=minimum.keepers,
    )
    result.notes.append(
        f"simulated kubelets: a pass every {kubelet_tick(nodes):g}s of wall time, no Events (the "
        f"prefetcher reads none), Lease renewals and node status writes at most every "
        f"{heartbeat_wall(nodes):g}s of wall time and {NODE_STATUS_EVERY:g}s simulated "
        f"(nodeStatusUpdateFrequency), a pod's progress (a container started, others waiting) "
        f"every {POD_STATUS_EVERY:g}s simulated (a new phase, or all containers started, at "
        "once); no scheduler (every pod names its node)"
    )
    say(
        f"== {nodes} nodes x {image_count} images: simulated clock at {speed:g}x, sweep every "
        f"{sweep_interval:g}s, coverage floor {floor.seconds:.0f}s simulated ({floor.bound_by}), "
        f"{physical.seconds:.0f}s with the registry's answer per image ({physical.bound_by})"
    )
    sim_cpu_start = self_cpu_seconds()
    with (
        tempfile.TemporaryDirectory(prefix="prefetch-scale-") as workdir,
        SimCluster(
            scenario(nodes, images, speed),
            speed=speed,
            scheduler=False,
            events=False,
            tick=kubelet_tick(nodes),
            min_wall_heartbeat=heartbeat_wall(nodes),
            node_status_every=NODE_STATUS_EVERY,
            pod_status_every=POD_STATUS_EVERY,
        ) as sim,
    ):
        say(f"  simulator up with {nodes} Ready nodes in {time.monotonic() - started:.1f}s")
        api = sim.api_client()
        install(api, images)
        env = {
            "IMAGE_SYNC_NAMESPACE": NAMESPACE,
            "IMAGE_SYNC_REGISTRIES": REGISTRY,
            "IMAGE_SYNC_MAX_CONCURRENT_PULLS": str(caps.concurrent),
            "IMAGE_SYNC_MAX_PULLS_PER_REGISTRY": str(caps.per_registry),
            "IMAGE_SYNC_MAX_PULLS_PER_IMAGE": str(caps.per_image),
            "IMAGE_SYNC_PULL_BATCH_SIZE": str(PULL_BATCH_SIZE),
            "IMAGE_SYNC_SWEEP_INTERVAL": f"{sweep_interval:g}s",
            "IMAGE_SYNC_LOG_LEVEL": "info",
            "IMAGE_SYNC_LOG_FORMAT": "text",
            # The simulated API server shares its process with a thousand kubelets: at its
            # busiest a Lease read can wait seconds. A longer renew deadline keeps the one
            # replica leading through that (the default 10 s is for a real API server).
            "IMAGE_SYNC_LEASE_DURATION": "60s",
            "IMAGE_SYNC_LEASE_RENEW_DEADLINE": "45s",
            **ALLOCATOR_ENV,  # as its Deployment runs it
        }
        heap_out = Path(workdir) / "heap.txt"
        command = (
            [sys.executable, str(ROOT / "bench" / "traced_prefetcher.py"), str(heap_out)]
            if heap
            else [str(ROOT / ".venv" / "bin" / "image-sync")]
        )
        prefetcher = PrefetcherProcess(
            [
                *command,
                "prefetcher",
                "--kubeconfig",
                str(sim.kubeconfig),
            ],
            env,
            Path(workdir),
            port=18000 + os.getpid() % 1000,
        )
        recorders: dict[str, profiles.Recorder] = {}
        if profile and profiles.available():
            recorders = {
                "prefetcher": profiles.Recorder(prefetcher.pid, Path(workdir) / "prefetcher.txt"),
                "simulator": profiles.Recorder(os.getpid(), Path(workdir) / "simulator.txt"),
            }
        elif profile:
            result.notes.append("py-spy not installed: no profiles")
        try:
            _converge(
                result,
                sim,
                prefetcher,
                floor.seconds,
                sim_cpu_start,
                left,
                heap_out=heap_out if heap else None,
                heap_at=heap_at,
            )
            for name, recorder in recorders.items():
                result.profiles[name] = asdict(recorder.finish())
            if heap:
                result.heap = _heap(prefetcher, heap_out)
            if result.covered:
                _steady(result, prefetcher, left)
                _join(result, sim, prefetcher, left)
            _report(result, prefetcher)
            if result.covered:
                _new_image(result, api, prefetcher, left)
            result.total_prefetcher_cpu = prefetcher.cpu_seconds()
        finally:
            for recorder in recorders.values():
                recorder.finish()
            prefetcher.stop()
    result.total_wall = time.monotonic() - started
    result.total_simulator_cpu = self_cpu_seconds() - sim_cpu_start
    result.simulator_peak_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result.load_after = os.getloadavg()
    return result


def _converge(
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
            result.heap_converging = _heap(prefetcher, heap_out)
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
        # The last pullers' deletions and keeper replacements follow coverage.
        poll(lambda: prefetcher.passes()[-1].writes == 0, min(120.0, left() - 30), interval=0.5)
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


def _heap(prefetcher: PrefetcherProcess, out: Path) -> str:
    """The traced prefetcher's live allocations now (bench/traced_prefetcher.py, SIGUSR2)."""
    prefetcher.process.send_signal(signal.SIGUSR2)
    if not poll(lambda: out.exists() and out.stat().st_size, 300.0, 0.5):
        return "no heap profile within 5 minutes"
    text = out.read_text()
    say(f"  heap of the prefetcher, RSS {prefetcher.memory_kib('VmRSS') / 1024:.0f} MiB:\n{text}")
    return text


def _sweeps(prefetcher: PrefetcherProcess) -> int:
    return sum(p.trigger == "sweep" for p in prefetcher.passes())


def _steady(result: SizeResult, prefetcher: PrefetcherProcess, left: Callable[[], float]) -> None:
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


def _join(
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


def _report(result: SizeResult, prefetcher: PrefetcherProcess) -> None:
    """/report three times (the first after a new plan is the costly one), then the page;
    then the prefetcher's memory with the whole cluster in its caches."""
    for _ in range(3):
        seconds, size = prefetcher.timed_get("/report")
        result.report_seconds.append(seconds)
        result.report_bytes = size
    result.page_seconds, result.page_bytes = prefetcher.timed_get("/")
    result.rss_mib = prefetcher.memory_kib("VmRSS") / 1024
    result.peak_rss_mib = prefetcher.memory_kib("VmHWM") / 1024


def _new_image(
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


def main() -> int:
    """`scale_run NODESxIMAGES OUT.json [--speed X] [--floor-wall S] [--budget S] [--profile]`."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("size")
    parser.add_argument("out", type=Path)
    parser.add_argument("--speed", type=float, default=None)
    parser.add_argument("--floor-wall", type=float, default=200.0)
    parser.add_argument("--budget", type=float, default=560.0)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--heap", action="store_true", help="trace the prefetcher's memory (tracemalloc)"
    )
    parser.add_argument(
        "--heap-at", type=float, default=0.5, help="coverage of the heap profile while converging"
    )
    args = parser.parse_args()
    nodes, images = (int(part) for part in args.size.split("x"))
    result = run_size(
        nodes,
        images,
        speed=args.speed,
        floor_wall=args.floor_wall,
        budget=args.budget,
        profile=args.profile,
        heap=args.heap,
        heap_at=args.heap_at,
    )
    args.out.write_text(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

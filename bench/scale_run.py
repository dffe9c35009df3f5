"""One size of the end-to-end scale bench: a simulated cluster, the real prefetcher, the figures.

The simulated cluster (bench/scale_cluster.py: API server, kubelets, registries) runs in
this process; the prefetcher is the real `image-sync prefetcher` command in a process of its
own, as in a cluster. The run goes through phases, each measured from the outside (the
prefetcher's /metrics, its pass log, /proc, the simulated disks):

1. converge from empty, the simulated clock at `speed` (sized so the floor takes a couple of
   minutes of wall time; never slower than real time);
2. stay converged: the writes of a sweep asked for (SIGHUP) once the last puller is deleted
   (or as late as the joining node's time allows);
3. a node joins, at real time (1x), until its images are on its disk;
4. /report and the HTML page are timed; the prefetcher's memory is read;
5. a new image is declared: the plan time of the pass it triggers.

This module sizes and wires the run; each phase is in bench/scale_phases.py, the figures they
gather in bench/scale_result.py.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import profiles  # noqa: E402
from bench.prefetcher_process import PrefetcherProcess  # noqa: E402
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
    heartbeat_wall,
    image_sizes,
    install,
    kubelet_tick,
    scenario,
)
from bench.scale_figures import (  # noqa: E402
    PullCaps,
    coverage_floor,
    join_floor,
    minimum_writes,
)
from bench.scale_phases import (  # noqa: E402
    heap_profile,
    measure_converge,
    measure_join,
    measure_new_image,
    measure_report,
    measure_steady,
    say,
    self_cpu_seconds,
)
from bench.scale_result import SizeResult  # noqa: E402
from prefetcher.memory import ALLOCATOR_ENV  # noqa: E402
from simulator.cluster import SimCluster  # noqa: E402


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
            measure_converge(
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
                result.heap = heap_profile(prefetcher, heap_out)
            if result.covered:
                measure_steady(result, prefetcher, left)
                measure_join(result, sim, prefetcher, left)
            measure_report(result, prefetcher)
            if result.covered:
                measure_new_image(result, api, prefetcher, left)
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

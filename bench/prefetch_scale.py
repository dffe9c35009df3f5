"""The prefetcher at scale on the simulator: 1,000 nodes x 200 images by default.

    .venv/bin/python bench/prefetch_scale.py [--nodes N] [--images M] [--speed S]

Prints: plan time (the pure step, on the converged snapshot, and across the run), API
requests (per pass while converging, and in one steady-state sweep), time to full coverage,
time to warm one joining node (measured at 1x speed) against its physical floor (the bytes
it needs / its bandwidth), and peak memory (of a standby prefetcher process that holds the whole cluster
in its caches and plans it; and of this process, simulator included).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests
from kubernetes import client

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from imagesync.cachedimage import object_name  # noqa: E402
from imagesync.config import load_config  # noqa: E402
from prefetcher.__main__ import Prefetcher  # noqa: E402
from prefetcher.informer import InformerSettings  # noqa: E402
from prefetcher.planner import plan  # noqa: E402
from simulator.cluster import SimCluster  # noqa: E402
from simulator.scenario import parse_scenario  # noqa: E402

NAMESPACE = "image-sync"
REGISTRY = "harbor.example.internal"
TOOLS = "ghcr.io/image-sync/image-sync:0.1.0"
NODE_BANDWIDTH = 10e9  # bits/s
MB = 1_000_000


def image_sizes(count: int) -> list[tuple[str, int, int]]:
    """(image, compressed, disk): a spread from 10 MB to 500 MB compressed, like a service fleet."""
    out = []
    for i in range(count):
        compressed = (10 + (i * 37) % 490) * MB
        out.append((f"{REGISTRY}/bench/svc-{i:03d}:1.0", compressed, int(compressed * 2.5)))
    return out


def scenario(nodes: int, images: list[tuple[str, int, int]], speed: float) -> Any:
    catalogue = [
        {"image": ref.split("/", 1)[1], "compressed": size, "disk": disk, "archs": ["amd64"]}
        for ref, size, disk in images
    ]
    return parse_scenario(
        {
            "name": "prefetch-scale",
            "speed": speed,
            "registries": [
                {"host": REGISTRY, "bandwidth": "400Gbps", "images": catalogue},
                {
                    "host": "ghcr.io",
                    "bandwidth": "100Gbps",
                    "images": [
                        {
                            "image": "image-sync/image-sync:0.1.0",
                            "compressed": 24 * MB,
                            "disk": 68 * MB,
                            "archs": ["amd64"],
                        }
                    ],
                },
            ],
            "nodes": [
                {
                    "pool": "cpu",
                    "count": nodes,
                    "cpu": "64",
                    "memory": "256Gi",
                    "disk": "2Ti",
                    "bandwidth": "10Gbps",
                    "maxPods": 500,
                    "zones": ["zone-a", "zone-b", "zone-c"],
                }
            ],
        },
        name="prefetch-scale",
    )


class Counting:
    """Counts every HTTP request one ApiClient sends (informers, lease and writes alike)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.total = 0
        self.by_method: dict[str, int] = {}  # the Lease's own renewals left out
        self._lock = threading.Lock()
        inner = api.rest_client.request

        def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.total += 1
                if "/leases/" not in url:
                    self.by_method[method] = self.by_method.get(method, 0) + 1
            return inner(method, url, *args, **kwargs)

        api.rest_client.request = request  # type: ignore[method-assign]

    def snapshot(self) -> tuple[int, dict[str, int]]:
        with self._lock:
            return self.total, dict(self.by_method)


class ScaledClock:
    def __init__(self, sim_clock: Any) -> None:
        self.sim = sim_clock

    def now(self) -> float:
        return float(self.sim.now())

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(max(0.0, float(self.sim.wall_seconds(seconds))))


def untyped(api: Any) -> Any:
    """A kubernetes API object as Any: plain dict bodies, which the client accepts."""
    return api


def say(text: str) -> None:
    print(text, flush=True)


def poll(condition: Any, timeout: float, interval: float = 1.0) -> Any:
    """The first truthy value of `condition`, or None after `timeout` wall seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    return None


def wait(condition: Any, timeout: float, what: str, interval: float = 1.0) -> Any:
    value = poll(condition, timeout, interval)
    if not value:
        raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
    return value


def install(api: client.ApiClient, images: list[tuple[str, int, int]]) -> None:
    import yaml

    base = ROOT / "manifests" / "base"
    untyped(client.ApiextensionsV1Api(api)).create_custom_resource_definition(
        yaml.safe_load((base / "crd-cachedimages.yaml").read_text())
    )
    untyped(client.CoreV1Api(api)).create_namespace({"metadata": {"name": NAMESPACE}})
    untyped(client.SchedulingV1Api(api)).create_priority_class(
        yaml.safe_load((base / "priorityclass.yaml").read_text())
    )
    custom = untyped(client.CustomObjectsApi(api))
    for ref, _, _ in images:
        custom.create_cluster_custom_object(
            "image-sync.io",
            "v1alpha1",
            "cachedimages",
            {
                "apiVersion": "image-sync.io/v1alpha1",
                "kind": "CachedImage",
                "metadata": {"name": object_name(ref)},
                "spec": {"image": ref, "source": "Declared"},
            },
        )


def standby_peak_memory(sim: SimCluster, env: dict[str, str]) -> tuple[int, float]:
    """Peak RSS (KiB) of a standby `image-sync prefetcher` process that caches the whole
    cluster and plans it for its report; and how long that report took."""
    port = 18000 + os.getpid() % 1000
    process = subprocess.Popen(
        [
            str(ROOT / ".venv" / "bin" / "image-sync"),
            "prefetcher",
            "--kubeconfig",
            str(sim.kubeconfig),
            "--bind",
            f"127.0.0.1:{port}",
            "--identity",
            "bench-standby",
        ],
        env={**os.environ, **env, "IMAGE_SYNC_LOG_LEVEL": "warning"},
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def standby() -> bool:
            try:
                return requests.get(f"{base}/healthz", timeout=5).text.strip() == "standby"
            except requests.RequestException:
                return False

        wait(standby, 600, "the standby's caches")
        started = time.perf_counter()
        requests.get(f"{base}/report", timeout=600).raise_for_status()
        report_seconds = time.perf_counter() - started
        # VmHWM: the peak resident set of the process since its exec (RUSAGE_CHILDREN would
        # count the forked copy of this process before the exec).
        status = Path(f"/proc/{process.pid}/status").read_text()
        peak = int(
            next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    return peak, report_seconds


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument(
        "--speed", type=float, default=60.0, help="simulated seconds per wall second"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        help="wall seconds to wait for full coverage; past it, the coverage reached is reported",
    )
    args = parser.parse_args()

    images = image_sizes(args.images)
    say(
        f"prefetch_scale: {args.nodes} nodes x {args.images} images, simulator speed {args.speed:g}x"
    )
    started = time.perf_counter()
    with SimCluster(scenario(args.nodes, images, args.speed), speed=args.speed) as sim:
        say(f"  simulator up with {args.nodes} Ready nodes in {time.perf_counter() - started:.1f}s")
        setup_api = sim.api_client()
        install(setup_api, images)

        env = {
            "IMAGE_SYNC_NAMESPACE": NAMESPACE,
            "IMAGE_SYNC_REGISTRIES": REGISTRY,
            "IMAGE_SYNC_MAX_CONCURRENT_PULLS": str(args.nodes),
            "IMAGE_SYNC_MAX_PULLS_PER_REGISTRY": str(args.nodes),
            "IMAGE_SYNC_MAX_PULLS_PER_IMAGE": str(args.nodes),
            "IMAGE_SYNC_SWEEP_INTERVAL": "1000h",
            # The default 1 s coalescing wait, in wall time: the prefetcher's clock runs at
            # the simulator's speed, and a shorter wait only plans the same changes twice.
            "IMAGE_SYNC_PASS_COALESCE": f"{args.speed:g}s",
            "IMAGE_SYNC_LEASE_DURATION": "1h",
            "IMAGE_SYNC_LEASE_RENEW_DEADLINE": "40m",
            "IMAGE_SYNC_LEASE_RETRY_PERIOD": "5m",
        }
        config = load_config(environ=env)
        api = sim.api_client()
        counter = Counting(api)
        prefetcher = Prefetcher(
            api,
            config,
            clock=ScaledClock(sim.clock),
            identity="bench-leader",
            bind=None,
            informer_settings=InformerSettings(watch_timeout=300),
        )
        t0_wall, t0_sim = time.perf_counter(), sim.clock.now()
        prefetcher.start()
        controller = prefetcher.controller
        plan_times: list[float] = []
        seen_passes = 0
        last_said = 0.0

        def coverage() -> bool:
            nonlocal seen_passes, last_said
            if controller.passes != seen_passes and controller.last_pass is not None:
                seen_passes = controller.passes
                plan_times.append(controller.last_pass.plan_seconds)
            last = controller.last_plan
            summary = last.summary if last is not None else None
            if summary is not None and time.perf_counter() - last_said >= 30:
                last_said = time.perf_counter()
                print(
                    f"    ... {last_said - t0_wall:6.0f}s coverage {summary.coverage:.3f}"
                    f" pulling {summary.pulling_pairs} passes {controller.passes}"
                    f" (last plan {plan_times[-1] if plan_times else 0:.1f}s)",
                    flush=True,
                )
            return summary is not None and summary.coverage >= 1.0 and summary.wanted_pairs > 0

        first_pass = wait(lambda: controller.last_pass, 600, "the first pass", interval=0.2)
        first_requests = counter.snapshot()[1]
        covered = poll(coverage, args.timeout, interval=2.0)
        full_wall, full_sim = time.perf_counter() - t0_wall, sim.clock.now() - t0_sim
        converge_requests, converge_methods = counter.snapshot()
        conflicts = sum(
            sample.value
            for metric in prefetcher.metrics.api_errors.collect()
            for sample in metric.samples
            if sample.name.endswith("_total") and sample.labels["code"] in ("404", "409")
        )
        passes = controller.passes
        last = controller.last_plan
        assert last is not None and last.summary is not None
        pairs, reached = last.summary.wanted_pairs, last.summary.coverage

        snapshot = controller.snapshot()
        timings = []
        for _ in range(3):
            t = time.perf_counter()
            plan(snapshot, config)
            timings.append(time.perf_counter() - t)

        sweep = sweep_methods = None
        warm = None
        if covered:
            # Let the last keeper replacements and status writes settle, then one steady sweep.
            wait(lambda: not controller.last_plan.writes, 600, "a quiet plan")  # type: ignore[union-attr]
            time.sleep(2)
            _, before = counter.snapshot()
            previous = controller.last_sweep
            controller.request_sweep()
            wait(
                lambda: controller.last_sweep is not previous, 600, "the steady sweep", interval=0.2
            )
            _, after = counter.snapshot()
            sweep = controller.last_sweep
            sweep_methods = {m: after.get(m, 0) - before.get(m, 0) for m in after}
            # One joining node: from joining to all its wanted images present, at 1x speed so
            # that every wall-clock latency (watch, pass, kubelet) counts at its real size.
            sim.clock.set_speed(1.0)
            controller.config = dataclasses.replace(config, pass_coalesce=1.0)
            joined = sim.add_node("cpu")
            wait(
                lambda: joined in controller.warm_times,
                args.timeout,
                f"{joined} warm",
                interval=0.5,
            )
            warm = controller.warm_times[joined]

        peak_standby, standby_report = standby_peak_memory(sim, env)
        prefetcher.stop()
        peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    say("")
    say(f"results ({args.nodes} nodes x {args.images} images = {pairs} wanted pairs)")
    say(f"  plan time, full snapshot:        median {statistics.median(timings):.3f}s (of 3)")
    if plan_times:
        say(
            f"  plan time across the run:        median {statistics.median(plan_times):.3f}s, "
            f"max {max(plan_times):.3f}s"
        )
    say(
        f"  first sweep:                     {first_pass.seconds:.2f}s, plan {first_pass.plan_seconds:.3f}s, "
        f"{sum(first_requests.values())} API requests {first_requests}"
    )
    if covered:
        say(
            f"  time to full coverage:           {full_wall:.0f}s wall = {full_sim:.0f}s simulated, {passes} passes"
        )
    else:
        say(
            f"  coverage after {full_wall:.0f}s wall = {full_sim:.0f}s simulated: {reached:.3f} "
            f"({passes} passes; --timeout ended the wait)"
        )
    say(
        f"  API requests while converging:   {sum(converge_methods.values())} "
        f"({sum(converge_methods.values()) / max(passes, 1):.1f} per pass) {converge_methods}"
        f"; {converge_requests} with lease renewals; {conflicts:.0f} answered 404/409 (already done)"
    )
    if sweep is not None and sweep_methods is not None:
        writes = sum(sweep_methods.get(m, 0) for m in ("POST", "PUT", "PATCH", "DELETE"))
        say(
            f"  API requests in a steady sweep:  {sum(sweep_methods.values())} besides lease renewals, "
            f"{writes} writes (sweep {sweep.seconds:.2f}s, actions {sweep.actions or 'none'})"
        )
    if warm is not None:
        needed = sum(size for _, size, _ in images)
        floor = needed * 8 / NODE_BANDWIDTH
        say(
            f"  joining node warmed in:          {warm:.0f}s at 1x vs physical floor {floor:.0f}s "
            f"({needed / 1e9:.1f} GB at {NODE_BANDWIDTH / 1e9:g} Gbps): {warm / floor:.1f}x"
        )
    say(
        f"  peak memory, standby prefetcher: {peak_standby / 1024:.0f} MiB "
        f"(its report plan took {standby_report:.2f}s)"
    )
    say(
        f"  peak memory, this process:       {peak_self / 1024:.0f} MiB (simulator + leader prefetcher)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

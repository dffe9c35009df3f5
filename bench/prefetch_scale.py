"""The prefetcher at scale on the simulator: 1,000 nodes x 200 images by default.

    .venv/bin/python bench/prefetch_scale.py [--nodes N] [--images M] [--timeout S]
    .venv/bin/python bench/prefetch_scale.py --planner-only [--sizes 100x20,1000x200,...]

The simulated cluster (API server, kubelets, scheduler, registries) runs in this process at
real time (1x); the prefetcher is the real `image-sync prefetcher` command in a process of
its own, as in a cluster, so each has a core of the two. Everything is measured from the
outside: the prefetcher's /metrics and its log (one line per pass), the simulator's disks.

Prints: plan time (across the run, and on the converged cluster), API requests (per pass
while converging, and over one steady-state sweep interval), time to full coverage against
its physical floor (the bytes ÷ the registry's or the nodes' bandwidth, whichever is less),
time to warm one joining node against its floor (its bytes ÷ its bandwidth), the
prefetcher's CPU use, and peak memory (the prefetcher process; this one, simulator included).

`--planner-only` times the planner alone on converged snapshots of each size, full and
incremental (see bench/planner_scale.py); it takes about a minute.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.planner_scale import SIZES  # noqa: E402
from bench.planner_scale import run as run_planner_only  # noqa: E402
from imagesync.cachedimage import object_name  # noqa: E402
from imagesync.names import POD_NAMESPACE_DEFAULT  # noqa: E402
from simulator.cluster import SimCluster  # noqa: E402
from simulator.scenario import parse_scenario  # noqa: E402

NAMESPACE = "image-sync"
REGISTRY = "harbor.example.internal"
TOOLS = "ghcr.io/image-sync/image-sync:0.1.0"
NODE_BANDWIDTH = 10e9  # bits/s
REGISTRY_BANDWIDTH = 400e9  # bits/s
SWEEP_INTERVAL = 300.0  # seconds: short, so that a steady sweep comes soon after convergence
MB = 1_000_000


def image_sizes(count: int) -> list[tuple[str, int, int]]:
    """(image, compressed, disk): a spread from 10 MB to 500 MB compressed, like a service fleet."""
    out = []
    for i in range(count):
        compressed = (10 + (i * 37) % 490) * MB
        out.append((f"{REGISTRY}/bench/svc-{i:03d}:1.0", compressed, int(compressed * 2.5)))
    return out


def scenario(nodes: int, images: list[tuple[str, int, int]]) -> Any:
    catalogue = [
        {"image": ref.split("/", 1)[1], "compressed": size, "disk": disk, "archs": ["amd64"]}
        for ref, size, disk in images
    ]
    return parse_scenario(
        {
            "name": "prefetch-scale",
            "speed": 1,
            "registries": [
                {
                    "host": REGISTRY,
                    "bandwidth": f"{REGISTRY_BANDWIDTH / 1e9:g}Gbps",
                    "images": catalogue,
                },
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
                    "bandwidth": f"{NODE_BANDWIDTH / 1e9:g}Gbps",
                    "maxPods": 500,
                    "zones": ["zone-a", "zone-b", "zone-c"],
                }
            ],
        },
        name="prefetch-scale",
    )


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
    for namespace in (NAMESPACE, POD_NAMESPACE_DEFAULT):
        untyped(client.CoreV1Api(api)).create_namespace({"metadata": {"name": namespace}})
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


PASS_LINE = re.compile(
    r"pass \((?P<trigger>[^)]*)\): (?P<writes>\d+) writes planned.* (?P<seconds>[\d.]+)s "
    r"\(plan (?P<plan>[\d.]+)s\)"
)


@dataclass(frozen=True)
class PassLine:
    trigger: str
    writes: int
    seconds: float
    plan: float


class PrefetcherProcess:
    """`image-sync prefetcher` as a child process: its /metrics, its pass log, its CPU and memory."""

    def __init__(self, kubeconfig: Path, env: dict[str, str], workdir: Path) -> None:
        self.port = 18000 + os.getpid() % 1000
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prefetcher.log"
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [
                str(ROOT / ".venv" / "bin" / "image-sync"),
                "prefetcher",
                "--kubeconfig",
                str(kubeconfig),
                "--bind",
                f"127.0.0.1:{self.port}",
            ],
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def check(self) -> None:
        if self.process.poll() is not None:
            tail = self.log_path.read_text().splitlines()[-20:]
            raise SystemExit("the prefetcher exited:\n" + "\n".join(tail))

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of /metrics, keyed by (name, sorted labels)."""
        self.check()
        text = requests.get(f"{self.url}/metrics", timeout=60).text
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def passes(self) -> list[PassLine]:
        out = []
        for line in self.log_path.read_text().splitlines():
            match = PASS_LINE.search(line)
            if match:
                out.append(
                    PassLine(
                        match["trigger"],
                        int(match["writes"]),
                        float(match["seconds"]),
                        float(match["plan"]),
                    )
                )
        return out

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_kib(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(
            next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._log.close()


def metric(samples: dict[Any, float], name: str, **labels: str) -> float:
    """The sum of `name` over every sample whose labels include `labels`."""
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and labels.items() <= dict(sample_labels).items()
    )


def requests_by_verb(samples: dict[Any, float]) -> dict[str, float]:
    """API requests so far by verb, the Lease's own renewals left out."""
    out: dict[str, float] = {}
    for (sample, labels), value in samples.items():
        label = dict(labels)
        if sample == f"{PREFIX}_api_requests_total" and label["resource"] != "leases":
            out[label["verb"]] = out.get(label["verb"], 0.0) + value
    return out


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, int]:
    return {
        k: int(v - before.get(k, 0.0)) for k, v in sorted(after.items()) if v - before.get(k, 0.0)
    }


PREFIX = "image_sync_prefetcher"
WRITES = ("create", "update", "patch", "delete")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument(
        "--planner-only",
        action="store_true",
        help="time only the planner, full and incremental, on converged snapshots of --sizes",
    )
    parser.add_argument(
        "--sizes",
        default=",".join(f"{n}x{m}" for n, m in SIZES),
        help="NODESxIMAGES,... for --planner-only (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=5400.0,
        help="seconds to wait for full coverage; past it, the coverage reached is reported",
    )
    args = parser.parse_args()
    if args.planner_only:
        sizes = tuple(
            (int(nodes), int(images))
            for nodes, images in (size.split("x") for size in args.sizes.split(","))
        )
        return run_planner_only(sizes, say)

    images = image_sizes(args.images)
    per_node = sum(size for _, size, _ in images)
    total_bytes = per_node * args.nodes
    coverage_floor = total_bytes * 8 / min(REGISTRY_BANDWIDTH, args.nodes * NODE_BANDWIDTH)
    say(f"prefetch_scale: {args.nodes} nodes x {args.images} images, at real time")
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="prefetch-scale-") as workdir,
        SimCluster(scenario(args.nodes, images), speed=1.0) as sim,
    ):
        say(f"  simulator up with {args.nodes} Ready nodes in {time.perf_counter() - started:.1f}s")
        install(sim.api_client(), images)
        env = {
            "IMAGE_SYNC_NAMESPACE": NAMESPACE,
            "IMAGE_SYNC_REGISTRIES": REGISTRY,
            "IMAGE_SYNC_MAX_CONCURRENT_PULLS": str(args.nodes),
            "IMAGE_SYNC_MAX_PULLS_PER_REGISTRY": str(args.nodes),
            "IMAGE_SYNC_MAX_PULLS_PER_IMAGE": str(args.nodes),
            "IMAGE_SYNC_SWEEP_INTERVAL": f"{SWEEP_INTERVAL:g}s",
            "IMAGE_SYNC_LOG_LEVEL": "info",
        }
        prefetcher = PrefetcherProcess(sim.kubeconfig, env, Path(workdir))
        try:
            t0 = time.perf_counter()
            wait(lambda: prefetcher.passes(), 600, "the first pass", interval=0.5)
            first_pass = time.perf_counter() - t0
            first = prefetcher.passes()[0]
            first_requests = requests_by_verb(prefetcher.metrics())
            last_said = 0.0

            def covered() -> bool:
                nonlocal last_said
                samples = prefetcher.metrics()
                coverage = metric(samples, f"{PREFIX}_coverage_ratio")
                now = time.perf_counter()
                if now - last_said >= 60:
                    last_said = now
                    passes = prefetcher.passes()
                    say(
                        f"    ... {now - t0:5.0f}s coverage {coverage:.3f}, pulling "
                        f"{metric(samples, f'{PREFIX}_pairs', state='pulling'):.0f}, failed "
                        f"{metric(samples, f'{PREFIX}_pairs', state='failed'):.0f}, "
                        f"{len(passes)} passes (last plan {passes[-1].plan:.2f}s), prefetcher CPU "
                        f"{prefetcher.cpu_seconds() / (now - t0):.0%} of a core"
                    )
                return coverage >= 1.0

            done = poll(covered, args.timeout, interval=2.0)
            full = time.perf_counter() - t0
            converging = prefetcher.passes()
            samples = prefetcher.metrics()
            converge_requests = requests_by_verb(samples)
            converge_cpu = prefetcher.cpu_seconds()
            reached = metric(samples, f"{PREFIX}_coverage_ratio")
            conflicts = sum(
                metric(samples, f"{PREFIX}_api_errors_total", code=code) for code in ("404", "409")
            )

            steady = steady_requests = None
            warm = warm_metric = None
            joined = ""
            if done:
                # One whole sweep interval of a converged cluster, from the end of a sweep
                # to the end of the next: what it costs to stay converged.
                def sweeps() -> int:
                    return sum(p.trigger == "sweep" for p in prefetcher.passes())

                wait(
                    lambda: prefetcher.passes()[-1].writes == 0,
                    1800,
                    "a pass with nothing to write",
                )
                seen = sweeps()
                wait(lambda: sweeps() > seen, SWEEP_INTERVAL * 2, "a sweep", interval=0.5)
                before = requests_by_verb(prefetcher.metrics())
                wait(
                    lambda: sweeps() > seen + 1, SWEEP_INTERVAL * 2, "the next sweep", interval=0.5
                )
                steady_requests = delta(requests_by_verb(prefetcher.metrics()), before)
                steady = [p for p in prefetcher.passes() if p.trigger == "sweep"][-1]

                # One joining node: from its creation to every wanted image on its disk.
                joined_at = time.perf_counter()
                joined = sim.add_node("cpu")
                refs = [ref for ref, _, _ in images]

                def warm_on_disk() -> bool:
                    try:
                        store = sim.image_store(joined)
                    except KeyError:
                        return False
                    return all(store.has(ref) for ref in refs)

                wait(warm_on_disk, args.timeout, f"{joined} warm", interval=0.25)
                warm = time.perf_counter() - joined_at
                wait(
                    lambda: metric(prefetcher.metrics(), f"{PREFIX}_node_warm_seconds_count") >= 1,
                    600,
                    "the prefetcher's warm-node metric",
                )
                warm_metric = metric(prefetcher.metrics(), f"{PREFIX}_node_warm_seconds_sum")
            peak_prefetcher = prefetcher.peak_rss_kib()
        finally:
            prefetcher.stop()
        peak_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    plans = [p.plan for p in converging]
    passes = len(converging)
    converge_total = sum(converge_requests.values())
    say("")
    say(f"results ({args.nodes} nodes x {args.images} images = {args.nodes * args.images} pairs)")
    say(
        f"  first pass:                      {first.seconds:.2f}s (plan {first.plan:.3f}s), "
        f"{first_pass:.1f}s after start; "
        f"{sum(first_requests.values()):.0f} API requests {delta(first_requests, {})}"
    )
    say(
        f"  plan time across the run:        median {statistics.median(plans):.3f}s, "
        f"max {max(plans):.3f}s, over {passes} passes"
    )
    if done:
        say(
            f"  time to full coverage:           {full:.0f}s vs physical floor {coverage_floor:.0f}s "
            f"({total_bytes / 1e12:.1f} TB at "
            f"{min(REGISTRY_BANDWIDTH, args.nodes * NODE_BANDWIDTH) / 1e9:g} Gbps): "
            f"{full / coverage_floor:.2f}x"
        )
    else:
        say(f"  coverage after {full:.0f}s: {reached:.3f} (--timeout ended the wait)")
    say(
        f"  API requests while converging:   {converge_total:.0f} "
        f"({converge_total / max(passes, 1):.1f} per pass) {delta(converge_requests, {})}; "
        f"{conflicts:.0f} answered 404/409 (already done)"
    )
    say(
        f"  prefetcher CPU while converging: {converge_cpu:.0f}s in {full:.0f}s "
        f"({converge_cpu / full:.0%} of a core)"
    )
    if steady is not None and steady_requests is not None:
        writes = sum(steady_requests.get(verb, 0) for verb in WRITES)
        say(
            f"  one steady sweep interval ({SWEEP_INTERVAL / 60:g} min): "
            f"{sum(steady_requests.values())} API requests besides Lease renewals, {writes} writes "
            f"{steady_requests}; the sweep pass {steady.seconds:.2f}s, plan {steady.plan:.3f}s"
        )
    if warm is not None and warm_metric is not None:
        floor = per_node * 8 / NODE_BANDWIDTH
        say(
            f"  joining node warmed in:          {warm:.0f}s on disk ({warm_metric:.0f}s by "
            f"node_warm_seconds) vs physical floor {floor:.0f}s ({per_node / 1e9:.1f} GB at "
            f"{NODE_BANDWIDTH / 1e9:g} Gbps): {warm / floor:.1f}x"
        )
    say(f"  peak memory, prefetcher:         {peak_prefetcher / 1024:.0f} MiB")
    say(f"  peak memory, this process:       {peak_self / 1024:.0f} MiB (the simulated cluster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

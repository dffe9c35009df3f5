"""Scale benchmark of the simulator: N managed nodes and M pods, all through the kubernetes client.

Prints pod-create throughput, list latency, watch latency (create → ADDED seen), watch event
throughput, how long the simulated kubelets take to run every pod, and process memory.
It prints figures; it asserts nothing.

    .venv/bin/python bench/sim_scale.py                      # 1,000 nodes, 50,000 pods
    .venv/bin/python bench/sim_scale.py --nodes 50 --pods 1000   # quick check
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client
from kubernetes.watch.watch import iter_resp_lines

from simulator.clock import SimClock
from simulator.informer import Informers
from simulator.kubelet import KubeletSet
from simulator.nodes import NodeConfig
from simulator.rawapi import call
from simulator.scenario import load_scenario
from simulator.scheduler import Scheduler
from simulator.testing import kube_client, running_apiserver


def _progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _pod(index: int, node: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "main",
                "image": "harbor.example.internal/library/app:1.0",
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
            }
        ]
    }
    if node:
        spec["nodeName"] = node
    return {
        "metadata": {"name": f"bench-{index}", "namespace": "bench", "labels": {"app": "bench"}},
        "spec": spec,
    }


class EventCounter:
    """Counts watch events on all pods from a background thread."""

    def __init__(self, core: client.CoreV1Api) -> None:
        self.core = core
        self.count = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                response = self.core.list_pod_for_all_namespaces(
                    watch=True, timeout_seconds=30, _preload_content=False
                )
                for _ in iter_resp_lines(response):
                    self.count += 1
                    if self.stop.is_set():
                        return
            except Exception:
                time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=50_000)
    parser.add_argument("--speed", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=8, help="client threads creating pods")
    parser.add_argument(
        "--scheduler", action="store_true", help="let the simulated scheduler bind pods"
    )
    parser.add_argument("--no-kubelets", action="store_true", help="measure the API server alone")
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="wall seconds to wait for Running"
    )
    args = parser.parse_args()

    results: dict[str, Any] = {"nodes": args.nodes, "pods": args.pods}
    with running_apiserver() as server:
        api = kube_client(server)
        core: Any = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": "bench"}})
        scenario = load_scenario("gpu-cluster")
        clock = SimClock(args.speed)
        nodes = [
            NodeConfig(name=f"node-{i}", cpu="64", memory="256Gi", max_pods=1000)
            for i in range(args.nodes)
        ]
        start = time.perf_counter()
        with ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(lambda n: call(core.create_node, n.manifest()), nodes))
        _progress(f"{args.nodes} nodes created")
        results["node_create_per_s"] = round(args.nodes / (time.perf_counter() - start), 1)

        informers = Informers(api)
        kubelets = None
        scheduler = None
        if not args.no_kubelets:
            kubelets = KubeletSet(
                api,
                clock,
                scenario.build_registries(clock.now()),
                informers=informers,
                events=False,
                tick=0.5,
                min_wall_heartbeat=max(2.0, args.nodes / 100),
            )
            kubelets.start()
        if args.scheduler:
            scheduler = Scheduler(api, clock, informers=informers, events=False, tick=0.5)
            scheduler.start()

        counter = EventCounter(core)
        counter.thread.start()
        start = phase_start = time.perf_counter()
        with ThreadPoolExecutor(args.workers) as pool:
            list(
                pool.map(
                    lambda i: call(
                        core.create_namespaced_pod,
                        "bench",
                        _pod(i, None if args.scheduler else nodes[i % args.nodes].name),
                    ),
                    range(args.pods),
                )
            )
        elapsed = time.perf_counter() - start
        _progress(f"{args.pods} pods created")
        results["pod_create_per_s"] = round(args.pods / elapsed, 1)

        latencies = []
        for _ in range(5):
            t = time.perf_counter()
            body = call(core.list_namespaced_pod, "bench")
            latencies.append(time.perf_counter() - t)
        results["list_all_pods_s_median"] = round(statistics.median(latencies), 3)
        results["list_all_pods_items"] = len(body["items"])
        t = time.perf_counter()
        call(core.list_namespaced_pod, "bench", limit=500)
        results["list_page_500_s"] = round(time.perf_counter() - t, 4)
        t = time.perf_counter()
        call(core.list_node)
        results["list_all_nodes_s"] = round(time.perf_counter() - t, 3)

        # Watch latency: time from create to the ADDED event on a selector-filtered watch.
        watch_lat = []
        for i in range(10):
            rv = call(core.list_namespaced_pod, "bench", limit=1)["metadata"]["resourceVersion"]
            response = core.list_namespaced_pod(
                "bench",
                watch=True,
                resource_version=rv,
                label_selector="probe=yes",
                timeout_seconds=30,
                _preload_content=False,
            )
            probe = _pod(args.pods + i, nodes[0].name)
            probe["metadata"]["labels"]["probe"] = "yes"
            t = time.perf_counter()
            call(core.create_namespaced_pod, "bench", probe)
            for line in iter_resp_lines(response):
                if json.loads(line).get("type") == "ADDED":
                    watch_lat.append(time.perf_counter() - t)
                    break
            response.close()
        _progress("lists and watches measured")
        results["watch_latency_ms_median"] = round(1000 * statistics.median(watch_lat), 1)
        results["watch_latency_ms_max"] = round(1000 * max(watch_lat), 1)

        if kubelets is not None:
            start = time.perf_counter()
            deadline = start + args.timeout
            running = 0
            while time.perf_counter() < deadline:
                phases = [
                    p["status"].get("phase")
                    for p in informers.pods.snapshot()
                    if p["metadata"].get("namespace") == "bench"
                ]
                running = sum(1 for p in phases if p == "Running")
                if running >= args.pods:
                    break
                _progress(f"{running}/{args.pods} pods running")
                time.sleep(1.0)
            results["all_running_after_create_s"] = round(time.perf_counter() - start, 1)
            results["pods_running"] = running
            results["kubelet"] = kubelets.summary()
        busy = time.perf_counter() - phase_start
        results["watch_events_total"] = counter.count
        results["watch_events_per_s"] = round(counter.count / busy, 1)
        results["peak_rss_mb"] = round(_rss_mb(), 1)
        counter.stop.set()
        for part in (scheduler, kubelets):
            if part is not None:
                part.stop()
        informers.stop()
    for key, value in results.items():
        print(f"{key:32} {value}")


if __name__ == "__main__":
    main()

"""Where a puller pod's time goes: one node's pullers, step by step, from one small run.

    .venv/bin/python bench/puller_timeline.py [--nodes 100] [--images 20] [--batch 10]

The simulated cluster runs in this process at real time (1x) with its Events on, the real
`image-sync prefetcher` in another. A watch records every change of the prefetcher's pods
(wall time of its arrival), the Events give each image's pull, and the prefetcher's log its
passes. For each puller of a node joining the converged cluster it prints, in wall seconds:

- create → kubelet: the pod's creation to its first status write (the kubelet saw it);
- init: the first status write to the tools container running;
- pulls: the images' answers and bytes (first "Pulling" to last "Pulled"; the tools image's
  pull belongs to the init step);
- last start: the last image pulled to the pod's status saying so (the container start,
  the kubelet's status write);
- to next: that status write to the node's next puller created (the watch, the coalescing
  wait, the pass);

and the sum next to the bytes alone: what each puller costs beyond its pulls.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client, watch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.prefetcher_process import PrefetcherProcess  # noqa: E402
from bench.scale_cluster import (  # noqa: E402
    NAMESPACE,
    NODE_BANDWIDTH,
    REGISTRY,
    REGISTRY_BANDWIDTH,
    REGISTRY_ROUND_TRIP,
    image_sizes,
    install,
    scenario,
)
from bench.scale_figures import join_floor  # noqa: E402
from imagesync.names import POD_NAMESPACE_DEFAULT  # noqa: E402
from simulator.cluster import SimCluster  # noqa: E402
from simulator.noderuntime import NodeRuntime  # noqa: E402

TOOLS = "image-sync/image-sync:"  # the tools image the init container copies the sleeper from
LOG_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*pass \(.* "
    r"(?P<seconds>[\d.]+)s \(plan"
)


@dataclass
class Timeline:
    """What happened to the prefetcher's pods, in epoch seconds (the simulated clock runs at 1x,
    so its times are wall times): the kubelet's own steps and when the watch saw them."""

    kubelet: list[tuple[float, str, str, str]] = field(default_factory=list)  # at, pod, reason, msg
    seen: list[tuple[float, str, str, str, bool]] = field(
        default_factory=list
    )  # at, pod, node, type, all started


def record_kubelet(timeline: Timeline) -> None:
    """Keep every event a simulated kubelet records about a puller, with its exact time."""
    original = NodeRuntime._event

    def recording(
        self: NodeRuntime, pod: Any, reason: str, message: str, at: float, type_: str = "Normal"
    ) -> None:
        if pod.name.startswith("isync-pull-"):
            timeline.kubelet.append((at, pod.name, reason, message))
        original(self, pod, reason, message, at, type_)

    NodeRuntime._event = recording  # type: ignore[method-assign,assignment]


def _all_started(pod: Any) -> bool:
    mains = (pod.status.container_statuses if pod.status else None) or []
    return bool(mains) and all(c.state and (c.state.running or c.state.terminated) for c in mains)


def record_pods(api: client.ApiClient, timeline: Timeline, stop: threading.Event) -> None:
    core = client.CoreV1Api(api)
    while not stop.is_set():
        for event in watch.Watch().stream(
            core.list_namespaced_pod, POD_NAMESPACE_DEFAULT, timeout_seconds=5
        ):
            pod = event["object"]
            if pod.metadata.name.startswith("isync-pull-"):
                timeline.seen.append(
                    (
                        time.time(),
                        pod.metadata.name,
                        pod.spec.node_name or "",
                        "DELETED" if pod.metadata.deletion_timestamp else event["type"],
                        _all_started(pod),
                    )
                )
            if stop.is_set():
                return


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument(
        "--parallel-pulls",
        type=int,
        default=0,
        help="kubelets pull this many images at once, and the prefetcher is told so "
        "(parallelPullNodes: {}); default: one at a time",
    )
    parser.add_argument(
        "--tick",
        type=float,
        default=None,
        help="wall seconds between the simulated kubelets' passes (default: the simulator's; "
        "the scale bench's 1,000 nodes run at 0.5)",
    )
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the prefetcher")
    args = parser.parse_args()
    images = image_sizes(args.images)
    refs = [ref for ref, _, _ in images]
    floor = join_floor(
        [size for _, size, _ in images], NODE_BANDWIDTH, REGISTRY_BANDWIDTH, REGISTRY_ROUND_TRIP
    )
    timeline = Timeline()
    stop = threading.Event()
    with (
        tempfile.TemporaryDirectory(prefix="puller-timeline-") as workdir,
        SimCluster(
            scenario(args.nodes, images, 1.0, args.parallel_pulls),
            speed=1.0,
            scheduler=False,
            **({"tick": args.tick} if args.tick is not None else {}),
        ) as sim,
    ):
        api = sim.api_client()
        install(api, images)
        env = {
            "IMAGE_SYNC_NAMESPACE": NAMESPACE,
            "IMAGE_SYNC_REGISTRIES": REGISTRY,
            "IMAGE_SYNC_MAX_CONCURRENT_PULLS": str(args.nodes + 1),
            "IMAGE_SYNC_MAX_PULLS_PER_REGISTRY": str(args.nodes + 1),
            "IMAGE_SYNC_MAX_PULLS_PER_IMAGE": str(args.nodes + 1),
            "IMAGE_SYNC_PULL_BATCH_SIZE": str(args.batch),
            "IMAGE_SYNC_LOG_LEVEL": "info",
            "IMAGE_SYNC_LOG_FORMAT": "text",
            **({"IMAGE_SYNC_PARALLEL_PULL_NODES": "{}"} if args.parallel_pulls else {}),
            **dict(item.split("=", 1) for item in args.env),
        }
        prefetcher = PrefetcherProcess(
            [
                str(ROOT / ".venv" / "bin" / "image-sync"),
                "prefetcher",
                "--kubeconfig",
                str(sim.kubeconfig),
            ],
            env,
            Path(workdir),
            port=18000 + os.getpid() % 1000,
        )
        try:
            deadline = time.monotonic() + 300 + 3 * floor
            while time.monotonic() < deadline and not all(
                _holds(sim, node, refs) for node in sim.node_names()
            ):
                time.sleep(0.5)
            # The last pullers' deletions follow coverage: join once a pass writes nothing.
            while time.monotonic() < deadline and prefetcher.passes()[-1].writes:
                time.sleep(0.5)
            record_kubelet(timeline)
            recorder = threading.Thread(target=record_pods, args=(api, timeline, stop), daemon=True)
            recorder.start()
            time.sleep(1)
            joined_at = time.time()
            joined = sim.add_node("cpu")
            deadline = time.monotonic() + 120 + 3 * floor
            while time.monotonic() < deadline and not _holds(sim, joined, refs):
                time.sleep(0.05)
            warm = time.time() - joined_at
            time.sleep(3)
            stop.set()
            log = prefetcher.log_path.read_text().splitlines()
        finally:
            prefetcher.stop()
    report(joined, joined_at, warm, timeline, log)
    print(
        f"  its floor: {floor:.1f}s (its bytes at its bandwidth and the registry's answer per "
        f"image); warm ÷ floor = {warm / floor:.3f}"
    )
    return 0


def _holds(sim: SimCluster, node: str, refs: list[str]) -> bool:
    try:
        store = sim.image_store(node)
    except KeyError:  # its kubelet has not started yet
        return False
    return all(store.has(ref) for ref in refs)


def _epoch(line_time: str) -> float:
    return datetime.strptime(line_time + "+0000", "%Y-%m-%d %H:%M:%S,%f%z").timestamp()


def report(node: str, joined_at: float, warm: float, timeline: Timeline, log: list[str]) -> None:
    passes = []  # (start, end, trigger)
    for line in log:
        match = LOG_LINE.search(line)
        if match:
            end = _epoch(match[1])
            passes.append((end - float(match["seconds"]), end, line.split(": ", 1)[1]))
    names = list(dict.fromkeys(name for _, name, n, _, _ in timeline.seen if n == node))
    print(f"{node} joined; its images on its disk after {warm:.2f}s (simulated = wall, 1x)")
    for start, end, trigger in passes:
        if joined_at - 1 <= end and start <= joined_at + 30:
            print(f"  pass {start - joined_at:6.2f}s → {end - joined_at:6.2f}s: {trigger}")
    rows: dict[str, list[float]] = {}
    previous_done = joined_at
    for name in names:
        seen = [(t, kind, done) for t, n, _, kind, done in timeline.seen if n == name]
        steps = [(t, reason, msg) for t, n, reason, msg in timeline.kubelet if n == name]
        created = min(t for t, kind, _ in seen if kind == "ADDED")
        kubelet_first = min((t for t, _, _ in steps), default=None)
        started = [t for t, reason, _ in steps if reason == "Started"]
        # The images' own pulls; the tools image's (the init container's) is part of "init".
        pulling = [t for t, reason, msg in steps if reason == "Pulling" and TOOLS not in msg]
        pulled = [
            t
            for t, reason, msg in steps
            if reason == "Pulled" and "Successfully" in msg and TOOLS not in msg
        ]
        status_done = min((t for t, kind, done in seen if done and kind != "DELETED"), default=None)
        create_pass = [p for p in passes if p[0] - 0.05 <= created <= p[1] + 0.05]
        parts = {
            "previous done → pass start": _gap(
                previous_done, create_pass[0][0] if create_pass else None
            ),
            "pass start → created": _gap(create_pass[0][0] if create_pass else None, created),
            "created → kubelet": _gap(created, kubelet_first),
            "kubelet → init started": _gap(kubelet_first, started[0] if started else None),
            "init started → first pull": _gap(
                started[0] if started else None, min(pulling, default=None)
            ),
            "pulls": _gap(min(pulling, default=None), max(pulled, default=None)),
            "last pulled → last started": _gap(
                max(pulled, default=None), max(started, default=None)
            ),
            "last started → status seen": _gap(max(started, default=None), status_done),
        }
        trigger = create_pass[0][2].split(")")[0] if create_pass else "?"
        print(f"  {name} (created by the pass of: {trigger})")
        print("    " + ", ".join(f"{k} {v:.2f}s" for k, v in parts.items() if v is not None))
        for key, value in parts.items():
            if value is not None:
                rows.setdefault(key, []).append(value)
        previous_done = status_done or previous_done
    print("  sum over its pullers:")
    for key, values in rows.items():
        print(f"    {key:30} {sum(values):6.2f}s")
    print(f"    {'(total)':30} {sum(sum(v) for v in rows.values()):6.2f}s")


def _gap(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else end - start


if __name__ == "__main__":
    sys.exit(main())

"""Replays scenarios on the simulator under five cache policies and compares what pods waited.

    .venv/bin/python bench/evaluate.py            # 4 scenarios x 5 policies, ~8 min on 2 cores
    .venv/bin/python bench/evaluate.py --quick    # 2 scenarios, faster clock, ~3 min

Policies:
- none: the kubelet pulls on demand (pods' own pull policies);
- static-list: what existing cache tools do: a fixed list of images, pulled to every node by
  a puller pod per node, refreshed every 30 simulated minutes (new nodes wait for the next
  refresh);
- everything: every image of the managed registries to every node, at once on new nodes;
- image-sync: the real webhook (gunicorn over TLS) and the real prefetcher, as subprocesses,
  starting cold: it learns each image from the first pod that uses it;
- image-sync+declared: the same, given the static list's knowledge up front as Declared
  CachedImages (with a GPU nodeSelector on the NGC ones), as a user following the docs would.

Each run is a fresh simulated cluster; numbers are registry- and kubelet-side truths from the
simulator (not the policies' own reports). Prints one table and writes PNG plots.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

if __package__ in (None, ""):
    # Run as a script: make the checkout importable (bench/, simulator/, imagesync/).
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulator.demo import (
    Baseline,
    DemoError,
    Progress,
    Run,
    RunOptions,
    RunResult,
    is_managed_image,
    load_run_scenario,
    managed_prefixes,
    scenario_extra,
)
from simulator.outcomes import (
    cumulative_hit_rate,
    fmt_bytes,
    fmt_seconds,
    fmt_share,
    spread,
    warmup_curve,
)

HERE = Path(__file__).resolve().parent
SCENARIOS = ("gpu-day", "registry-outage", "gpu-burst", "mixed")
QUICK_SCENARIOS = ("gpu-day", "registry-outage")
POLICIES = ("none", "static-list", "everything", "image-sync", "image-sync+declared")
BASELINE_NAMESPACE = "cache-baseline"
REFRESH_SECONDS = 1800.0


class ListPuller(Baseline):
    """A fixed image list pulled to every node by one puller pod per node (DaemonSet-like),
    re-created every `refresh` simulated seconds; with `follow_new_nodes` a node that joins
    gets its pod at once, otherwise at the next refresh (how cron-style cache tools behave)."""

    def __init__(self, name: str, images: Sequence[str], refresh: float, follow_new_nodes: bool):
        self.name = name
        self.images = list(images)
        self.refresh = refresh
        self.follow_new_nodes = follow_new_nodes
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, cluster: Any, workload_start: float) -> None:
        self._thread = threading.Thread(
            target=self._run, args=(cluster, workload_start), name=self.name, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self, cluster: Any, start: float) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        core = client.CoreV1Api(cluster.api_client())
        with contextlib.suppress(ApiException):
            namespace: Any = {"metadata": {"name": BASELINE_NAMESPACE}}
            core.create_namespace(namespace, _preload_content=False)
        generation = 0
        next_refresh = start
        covered: set[str] = set()
        while not self._stop.is_set():
            try:
                ready = [n["metadata"]["name"] for n in cluster.nodes() if _ready(n)]
            except Exception:
                ready = []
            if cluster.clock.now() >= next_refresh:
                generation += 1
                next_refresh += self.refresh
                targets = ready
            elif self.follow_new_nodes:
                targets = [n for n in ready if n not in covered]
            else:
                targets = []
            for node in targets:
                covered.add(node)
                with contextlib.suppress(ApiException):
                    core.create_namespaced_pod(
                        BASELINE_NAMESPACE,
                        cast(Any, self._pod(node, generation)),
                        _preload_content=False,
                    )
                if generation > 1:
                    with contextlib.suppress(ApiException):
                        core.delete_namespaced_pod(
                            f"pull-{node}-{generation - 1}",
                            BASELINE_NAMESPACE,
                            _preload_content=False,
                        )
            self._stop.wait(0.2)

    def _pod(self, node: str, generation: int) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"pull-{node}-{generation}",
                "labels": {"app": self.name},
                "annotations": {"sim.image-sync.io/run-seconds": "1"},
            },
            "spec": {
                "nodeName": node,
                "restartPolicy": "Never",
                "tolerations": [{"operator": "Exists"}],
                "containers": [
                    {"name": f"image-{i}", "image": image, "imagePullPolicy": "IfNotPresent"}
                    for i, image in enumerate(self.images)
                ],
            },
        }


class Declare(Baseline):
    """Declared CachedImages for the scenario's static list, created when the workload starts."""

    def __init__(self, entries: Sequence[dict[str, Any]]):
        self.entries = list(entries)

    def start(self, cluster: Any, workload_start: float) -> None:
        from kubernetes import client

        from imagesync.cachedimage import object_name
        from imagesync.names import API_VERSION, CACHED_IMAGE_KIND, GROUP, SOURCE_DECLARED, VERSION
        from imagesync.reference import normalize

        api = client.CustomObjectsApi(cluster.api_client())
        for entry in self.entries:
            image = normalize(entry["image"])
            spec: dict[str, Any] = {"image": image, "source": SOURCE_DECLARED}
            if entry.get("nodeSelector"):
                spec["nodeSelector"] = dict(entry["nodeSelector"])
            body = {
                "apiVersion": API_VERSION,
                "kind": CACHED_IMAGE_KIND,
                "metadata": {"name": object_name(image)},
                "spec": spec,
            }
            api.create_cluster_custom_object(GROUP, VERSION, "cachedimages", body)


def static_list(path: str) -> list[dict[str, Any]]:
    """The scenario's `staticList`: image strings or `{image, nodeSelector}` entries."""
    entries = scenario_extra(path, "staticList") or []
    return [e if isinstance(e, dict) else {"image": str(e)} for e in entries]


def _ready(node: dict[str, Any]) -> bool:
    conditions = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def scenario_path(name: str) -> str:
    candidate = HERE / "scenarios" / f"{name}.yaml"
    return str(candidate) if candidate.exists() else name


def is_shipped(name: str) -> bool:
    """A scenario of bench/scenarios/ named as such (not a file of the user's)."""
    return (HERE / "scenarios" / f"{name}.yaml").exists()


def plot_dir(scenarios: Sequence[str], json_file: str | None, cwd: Path) -> Path:
    """Where the PNGs go without --img: docs/img/ only for the shipped scenarios (the figures
    the docs show); for a scenario of the user's, beside the --json results, else in
    ./evaluation-img, so evaluating one's own scenario never overwrites the committed plots."""
    if all(is_shipped(s) for s in scenarios):
        return HERE.parent / "docs" / "img"
    if json_file:
        results = Path(json_file)
        return results.parent / f"{results.stem}-img"
    return cwd / "evaluation-img"


def everything_images(path: str) -> list[str]:
    """Every image the managed registries serve: the upper bound a copy-everything tool pulls."""
    prefixes = managed_prefixes()
    return [
        image for image in load_run_scenario(path).images() if is_managed_image(image, prefixes)
    ]


def baseline_for(policy: str, path: str) -> Baseline | None:
    if policy == "static-list":
        images = [str(entry["image"]) for entry in static_list(path)]
        return ListPuller("static-list", images, REFRESH_SECONDS, False)
    if policy == "image-sync+declared":
        return Declare(static_list(path))
    if policy == "everything":
        return ListPuller("everything", everything_images(path), REFRESH_SECONDS, True)
    return None


@dataclass(frozen=True)
class Row:
    result: RunResult
    figures: dict[str, Any]
    repeat: int = 0


def run_all(
    scenarios: Sequence[str],
    policies: Sequence[str],
    speed: float,
    progress: Progress,
    workdir: Path,
    repeats: int = 1,
) -> list[Row]:
    """Every scenario under every policy, `repeats` times; repeats are interleaved so a change
    in the machine's load during the evaluation affects every policy alike."""
    rows = []
    for repeat in range(repeats):
        for scenario in scenarios:
            path = scenario_path(scenario)
            for policy in policies:
                label = f"{scenario}/{policy}" + (f"#{repeat + 1}" if repeats > 1 else "")
                options = RunOptions(
                    scenario=path,
                    policy=label,
                    image_sync=policy.startswith("image-sync"),
                    speed=speed,
                    progress_every=30.0,
                )
                where = workdir / f"{scenario}-{policy}-{repeat}"
                with Run(options, progress, where, baseline_for(policy, path)) as run:
                    result = run.replay()
                result.policy = policy
                rows.append(Row(result, result.figures(), repeat))
    return rows


def grouped(rows: Sequence[Row]) -> list[list[Row]]:
    """Rows of the same scenario and policy together, in the order they first ran."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for row in rows:
        groups.setdefault((row.figures["scenario"], row.figures["policy"]), []).append(row)
    return list(groups.values())


def _median(group: Sequence[Row], key: str, fmt: Callable[[float], str], ranged: bool) -> str:
    middle, low, high = spread([float(row.figures[key]) for row in group])
    text = fmt(middle)
    if ranged and len(group) > 1:
        text += f" ({fmt(low)} to {fmt(high)})"
    return text


def table(rows: Sequence[Row]) -> str:
    """One markdown table: every scenario under every policy (medians over repeats, with the
    range of the hit rate and p95)."""
    header = (
        "| scenario | policy | pods started | cache hit rate | image wait p50 | p95 | p99 "
        "| bytes pulled | disk used (all nodes) | peak concurrent pulls |"
    )
    lines = [header, "|" + " --- |" * 10]
    for group in grouped(rows):
        f = group[0].figures
        started = min(row.figures["pods_started"] for row in group)
        peak = max(row.figures["peak_pulls"] for row in group)
        lines.append(
            f"| {f['scenario']} | {f['policy']} | {started}/{f['pods_bound']} "
            f"| {_median(group, 'hit_rate', fmt_share, True)} "
            f"| {_median(group, 'wait_p50', fmt_seconds, False)} "
            f"| {_median(group, 'wait_p95', fmt_seconds, True)} "
            f"| {_median(group, 'wait_p99', fmt_seconds, False)} "
            f"| {_median(group, 'bytes_pulled', fmt_bytes, False)} "
            f"| {_median(group, 'disk_used', fmt_bytes, False)} | {peak} |"
        )
    return "\n".join(lines)


def lag_warnings(rows: Sequence[Row]) -> list[str]:
    """One warning per run whose binding fell behind pod creation (its waits are bent)."""
    return [
        row.result.lag.warning(f"{row.result.scenario}/{row.result.policy}#{row.repeat + 1}")
        for row in rows
        if row.result.lag is not None and row.result.lag.behind
    ]


def warm_table(rows: Sequence[Row]) -> str:
    """Time until the nodes that joined held every image their pool's pods used."""
    lines = [
        "| scenario | policy | nodes joined | warm (all wanted images present) | slowest node |",
        "| --- | --- | --- | --- | --- |",
    ]
    for group in grouped(rows):
        joined = group[0].figures["joined"]
        if not joined:
            continue
        warm = sum(
            1 for row in group for j in row.figures["joined"] if j["warm_seconds"] is not None
        )
        slowest = [
            max(j["warm_seconds"] for j in row.figures["joined"])
            for row in group
            if all(j["warm_seconds"] is not None for j in row.figures["joined"])
        ]
        text = "not warm"
        if len(slowest) == len(group):
            middle, low, high = spread(slowest)
            text = fmt_seconds(middle)
            if len(group) > 1:
                text += f" ({fmt_seconds(low)} to {fmt_seconds(high)})"
        lines.append(
            f"| {group[0].figures['scenario']} | {group[0].figures['policy']} | {len(joined)} "
            f"| {warm}/{len(joined) * len(group)} | {text} |"
        )
    return "\n".join(lines)


def plot(rows: Sequence[Row], out: Path) -> list[Path]:
    """hit-rate-over-time.png (one panel per scenario) and warm-up.png (scenarios with joins),
    from the first repeat."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    rows = [row for row in rows if row.repeat == 0]
    scenarios = list(dict.fromkeys(r.figures["scenario"] for r in rows))
    written = []
    columns = min(2, len(scenarios))
    lines_ = math.ceil(len(scenarios) / columns)
    fig, axes = plt.subplots(lines_, columns, figsize=(6 * columns, 3.6 * lines_), squeeze=False)
    for index, scenario in enumerate(scenarios):
        ax = axes[index // columns][index % columns]
        for row in rows:
            if row.figures["scenario"] != scenario:
                continue
            curve = cumulative_hit_rate(row.result.pods)
            if curve:
                ax.step(
                    [t / 60 for t, _ in curve],
                    [r * 100 for _, r in curve],
                    where="post",
                    label=row.figures["policy"],
                )
        ax.set_title(scenario)
        ax.set_xlabel("simulated minutes")
        ax.set_ylabel("cache hit rate so far (%)")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    for index in range(len(scenarios), lines_ * columns):
        axes[index // columns][index % columns].axis("off")
    fig.tight_layout()
    path = out / "hit-rate-over-time.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    joined_scenarios = [
        s for s in scenarios if any(r.result.joined for r in rows if r.figures["scenario"] == s)
    ]
    if joined_scenarios:
        fig, axes = plt.subplots(
            1, len(joined_scenarios), figsize=(6 * len(joined_scenarios), 3.6), squeeze=False
        )
        for index, scenario in enumerate(joined_scenarios):
            ax = axes[0][index]
            for row in rows:
                if row.figures["scenario"] != scenario:
                    continue
                arrivals = [
                    moment - node.joined_at
                    for node in row.result.joined
                    for moment in node.arrivals.values()
                ]
                wanted = sum(len(node.wanted) for node in row.result.joined)
                curve = warmup_curve(0.0, arrivals, wanted)
                end = (row.result.length - min(n.joined_at for n in row.result.joined)) / 60
                xs = [t / 60 for t, _ in curve] + [end]
                ys = [f * 100 for _, f in curve] + [curve[-1][1] * 100]
                ax.step(xs, ys, where="post", label=row.figures["policy"])
            ax.set_title(f"{scenario}: new nodes warming up")
            ax.set_xlabel("simulated minutes since the node joined")
            ax.set_ylabel("wanted images present (%)")
            ax.set_ylim(0, 105)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        path = out / "warm-up.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None, clock: Callable[[], float] = time.monotonic) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="2 scenarios and a faster clock")
    parser.add_argument("--scenario", action="append", help="scenario name or file (repeatable)")
    parser.add_argument("--policy", action="append", choices=POLICIES, help="(repeatable)")
    parser.add_argument("--speed", type=float, help="simulated seconds per wall second")
    parser.add_argument(
        "--img",
        help="PNG directory (default: docs/img for the shipped scenarios; otherwise beside "
        "the --json file, or ./evaluation-img)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    parser.add_argument(
        "--repeat", type=int, default=1, metavar="N", help="run everything N times; medians"
    )
    args = parser.parse_args(argv)
    scenarios = args.scenario or (QUICK_SCENARIOS if args.quick else SCENARIOS)
    policies = args.policy or POLICIES
    speed = args.speed or (180.0 if args.quick else 120.0)
    progress = Progress(sys.stderr, clock)
    with tempfile.TemporaryDirectory(prefix="image-sync-eval-") as tmp:
        try:
            rows = run_all(scenarios, policies, speed, progress, Path(tmp), max(1, args.repeat))
        except DemoError as exc:
            print(f"evaluate: {exc}", file=sys.stderr)
            return 1
    runs = f"median of {args.repeat} runs" if args.repeat > 1 else "one run"
    print(f"Simulated clock: {speed:g}x; every run a fresh cluster; {runs} per cell.\n")
    print(table(rows))
    print()
    print(warm_table(rows))
    behind = lag_warnings(rows)
    for line in behind:
        print(f"\nWARNING {line}")
    img = Path(args.img) if args.img else plot_dir(scenarios, args.json, Path.cwd())
    for path in plot(rows, img):
        print(f"\nwrote {path}")
    if args.json:
        Path(args.json).write_text(
            json.dumps([row.result.details() for row in rows], indent=1, default=str)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`image-sync demo`: the whole system on the simulated cluster, measured against itself without it.

The demo is the proof a newcomer can run in two minutes: the same GPU-cluster scenario is
replayed twice on the simulator's accelerated clock — once as a plain cluster, once with the
real webhook (gunicorn over TLS, certificates from `image-sync certs`) and the real
prefetcher, both started through the console script exactly as an operator would — and the
summary compares how long pods waited for their images. The building blocks (child
processes, the install into the simulated API server, one measured run) are shared with
`bench/evaluate.py`, which adds the baseline policies; they live in `demo_harness`,
`demo_scenarios`, `demo_results` and `demo_run`, and this module re-exports them.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from pathlib import Path
from typing import TextIO

from simulator.demo_harness import (
    JSON,
    MANAGED_REGISTRIES,
    NAMESPACE,
    TOOL_NAMESPACES,
    WEBHOOK_SERVICE,
    Child,
    Children,
    DemoError,
    Monotonic,
    Progress,
    accelerated_settings,
    child_env,
    console_script,
    free_port,
    install_image_sync,
    make_certs,
    manifest_documents,
    repo_root,
    tail,
    wait_http,
)
from simulator.demo_results import (
    JoinedNode,
    PodRecord,
    RunResult,
    Transfer,
    is_managed_image,
    managed_prefixes,
    metered_registries,
)
from simulator.demo_run import Baseline, Run, RunOptions
from simulator.demo_scenarios import load_run_scenario, replay_length, scenario_extra
from simulator.outcomes import fmt_bytes, fmt_seconds, fmt_share

__all__ = [
    "DEFAULT_DEMO_SCENARIO",
    "DEFAULT_SPEED",
    "JSON",
    "MANAGED_REGISTRIES",
    "NAMESPACE",
    "TOOL_NAMESPACES",
    "WEBHOOK_SERVICE",
    "Baseline",
    "Child",
    "Children",
    "DemoError",
    "JoinedNode",
    "Monotonic",
    "PodRecord",
    "Progress",
    "Run",
    "RunOptions",
    "RunResult",
    "Transfer",
    "accelerated_settings",
    "child_env",
    "console_script",
    "demo_scenario_path",
    "format_summary",
    "free_port",
    "install_image_sync",
    "is_managed_image",
    "load_run_scenario",
    "make_certs",
    "managed_prefixes",
    "manifest_documents",
    "metered_registries",
    "replay_length",
    "repo_root",
    "run_demo",
    "scenario_extra",
    "tail",
    "wait_http",
]

DEFAULT_DEMO_SCENARIO = "gpu-day"
DEFAULT_SPEED = 60.0


def demo_scenario_path(name: str) -> str:
    """The demo's replay: the shipped gpu-cluster nodes and registries with a working day's
    workload (bench/scenarios/gpu-day.yaml); any other name or path is used as given."""
    candidate = repo_root() / "bench" / "scenarios" / f"{name}.yaml"
    return str(candidate) if candidate.exists() else name


def format_summary(without: RunResult, with_: RunResult, speed: float) -> str:
    """The demo's closing table: the same replay without and with image-sync."""
    a, b = without.figures(), with_.figures()

    def warm(figures: JSON) -> str:
        parts = []
        for node in figures["joined"]:
            seconds = node["warm_seconds"]
            if seconds is None:
                parts.append(
                    f"{node['node']}: not warm ({node['present']}/{node['wanted']} images)"
                )
            else:
                parts.append(f"{node['node']}: {fmt_seconds(seconds)} ({node['wanted']} images)")
        return "; ".join(parts) or "-"

    rows = [
        (
            "pods started",
            f"{a['pods_started']} of {a['pods_created']}",
            f"{b['pods_started']} of {b['pods_created']}",
        ),
        ("images already on the node", fmt_share(a["hit_rate"]), fmt_share(b["hit_rate"])),
        ("image wait p50", fmt_seconds(a["wait_p50"]), fmt_seconds(b["wait_p50"])),
        ("image wait p95", fmt_seconds(a["wait_p95"]), fmt_seconds(b["wait_p95"])),
        ("new node warm after", warm(a), warm(b)),
        (
            "bytes pulled from registries",
            fmt_bytes(a["bytes_pulled"]),
            fmt_bytes(b["bytes_pulled"]),
        ),
    ]
    width = max(len(r[0]) for r in rows)
    col = max(len("without image-sync"), *(len(r[1]) for r in rows))
    lines = [
        f"Summary: scenario {with_.scenario}, {with_.length / 60:.0f} simulated minutes at {speed:g}x, "
        "same workload twice",
        "",
        f"  {'':<{width}}  {'without image-sync':<{col}}  with image-sync",
    ]
    lines += [f"  {name:<{width}}  {left:<{col}}  {right}" for name, left, right in rows]
    for result in (without, with_):
        if result.lag is not None and result.lag.behind:
            lines += ["", "  WARNING " + result.lag.warning(result.policy)]
    return "\n".join(lines)


def run_demo(
    *,
    once: bool,
    scenario: str,
    speed: float,
    out: TextIO,
    summary_json: Path | None = None,
    workdir: Path | None = None,
    config_file: Path | None = None,
    clock: Monotonic = time.monotonic,
) -> int:
    """Both replays, the summary, then (unless `once`) the report until Ctrl-C."""
    progress = Progress(out, clock)
    scenario_path = demo_scenario_path(scenario)
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="image-sync-demo-"))
            )
        progress.say(f"image-sync demo: scenario {scenario}, clock {speed:g}x; logs in {workdir}")
        options = RunOptions(
            scenario=scenario_path, policy="without image-sync", image_sync=False, speed=speed
        )
        with Run(options, progress, workdir / "without") as run:
            without = run.replay()
        options = RunOptions(
            scenario=scenario_path,
            policy="with image-sync",
            image_sync=True,
            speed=speed,
            config_file=config_file,
        )
        run = stack.enter_context(Run(options, progress, workdir / "with"))
        with_ = run.replay()
        out.write("\n" + format_summary(without, with_, speed) + "\n\n")
        if summary_json is not None:
            summary_json.write_text(
                json.dumps(
                    {"without": without.details(), "with": with_.details()}, indent=1, default=str
                )
            )
        assert run.cluster is not None
        out.write(
            f"Prefetch report: {run.report_url}  (JSON: {run.report_url}report, metrics: {run.report_url}metrics)\n"
        )
        out.write(f"The cluster: kubectl --kubeconfig {run.cluster.kubeconfig} get pods -A\n")
        out.flush()
        if once:
            return 0
        out.write("Serving until Ctrl-C.\n")
        out.flush()
        while True:
            run.children.check()
            time.sleep(0.5)

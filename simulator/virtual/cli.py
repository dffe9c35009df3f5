"""`image-sync replay`: replay a pod trace from your cluster under the cache policies in
virtual time and print what each would have done (docs/evaluation.md, "Replay your cluster")."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from imagesync.config import Config
from imagesync.quantities import parse_size

DEFAULT_CLUSTER = "gpu-cluster"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from simulator.virtual.replay import POLICIES

    parser.add_argument("trace", metavar="TRACE", help="pod trace: JSON lines, or CSV (.csv)")
    parser.add_argument(
        "--scenario",
        default=DEFAULT_CLUSTER,
        metavar="FILE|NAME",
        help=f"the cluster: nodes, registries, node events, staticList (default {DEFAULT_CLUSTER})",
    )
    parser.add_argument(
        "--policies",
        default=",".join(POLICIES),
        metavar="LIST",
        help=f"comma-separated, from {', '.join(POLICIES)} (default: all)",
    )
    parser.add_argument(
        "--image-size",
        default="1GB",
        metavar="SIZE",
        help="compressed size of a trace image the scenario does not list (default 1GB)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="how long to run after the last pod is created (default 600)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON")


def run(args: argparse.Namespace, config: Config) -> int:
    from simulator.scenario import ScenarioError
    from simulator.virtual import replay, report, targets
    from simulator.virtual.clusterfile import load_cluster, with_trace_images
    from simulator.virtual.trace import TraceError, load_trace

    policies = [p.strip() for p in str(args.policies).split(",") if p.strip()]
    unknown = [p for p in policies if not replay.known_policy(p)]
    if unknown or not policies:
        print(
            f"image-sync replay: unknown policies {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(replay.POLICIES)} or {replay.CATALOG_ON}PREFIX",
            file=sys.stderr,
        )
        return 2
    try:
        pods = load_trace(args.trace)
        scenario, static = load_cluster(args.scenario)
        scenario, added = with_trace_images(scenario, pods, parse_size(args.image_size))
    except (TraceError, ScenarioError, ValueError) as exc:
        print(f"image-sync replay: {exc}", file=sys.stderr)
        return 2
    if added:
        print(
            f"{len(added)} trace image(s) not in the scenario's registries were given "
            f"{args.image_size} each (use --scenario with your registries for real sizes)",
            file=sys.stderr,
        )
    if "static-list" in policies and not static:
        print("static-list: the scenario has no staticList; it pulls nothing", file=sys.stderr)
    work = replay.workload(scenario, pods, static, settle=args.settle)
    results = []
    for policy in policies:
        began = time.perf_counter()
        results.append(replay.run(work, policy, config))
        print(
            f"{policy}: {len(pods)} pods over {work.length / 3600:.1f} h replayed in "
            f"{time.perf_counter() - began:.1f} s",
            file=sys.stderr,
        )
    print(report.table(results))
    print()
    print(report.miss_table(results))
    print()
    print(report.registry_table(results))
    print()
    print(targets.table(results))
    if args.json:
        Path(args.json).write_text(
            json.dumps([r.figures() for r in results], indent=1, default=str) + "\n"
        )
    return 0

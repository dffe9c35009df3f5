"""The tables a virtual replay prints: figures per policy, misses by cause, bytes per registry."""

from __future__ import annotations

import math
from collections.abc import Sequence

from simulator.virtual.node import PREFETCH, WORKLOAD
from simulator.virtual.results import CAUSES, RunResult


def seconds(value: float | None) -> str:
    """`0 s`, `4.2 s`, `5.6 min`, `2.1 h`; a hyphen for no data."""
    if value is None or math.isnan(value):
        return "-"
    if value >= 7200:
        return f"{value / 3600:.1f} h"
    if value >= 120:
        return f"{value / 60:.1f} min"
    if value >= 10 or value == 0:
        return f"{value:.0f} s"
    return f"{value:.1f} s"


def size(value: float) -> str:
    """Decimal units, as registries quote image sizes."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if value >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{value:.0f} B"


def share(value: float) -> str:
    return "-" if math.isnan(value) else f"{value * 100:.0f} %"


def table(results: Sequence[RunResult]) -> str:
    """Hit rate, waits, creation-to-running, bytes and disk per scenario and policy."""
    lines = [
        "| scenario | policy | pods started | cache hit rate | image wait p50 | p95 | p99 "
        "| created→running p50 | p95 | p99 | pulled: workload | prefetch | disk used |",
        "|" + " --- |" * 13,
    ]
    for result in results:
        f = result.figures()
        lines.append(
            f"| {f['scenario']} | {f['policy']} | {f['pods_started']}/{f['pods_created']} "
            f"| {share(f['hit_rate'])} | {seconds(f['wait_p50'])} | {seconds(f['wait_p95'])} "
            f"| {seconds(f['wait_p99'])} | {seconds(f['running_p50'])} "
            f"| {seconds(f['running_p95'])} | {seconds(f['running_p99'])} "
            f"| {size(f['bytes_workload'])} | {size(f['bytes_prefetch'])} "
            f"| {size(f['disk_used'])} |"
        )
    return "\n".join(lines)


def miss_table(results: Sequence[RunResult]) -> str:
    """Every miss by its cause (see `simulator.virtual.results`)."""
    lines = [
        "| scenario | policy | misses | " + " | ".join(CAUSES) + " | planning passes |",
        "|" + " --- |" * (len(CAUSES) + 4),
    ]
    for result in results:
        f = result.figures()
        misses = f["misses"]
        passes = f.get("passes")
        lines.append(
            f"| {f['scenario']} | {f['policy']} | {sum(misses.values())} | "
            + " | ".join(str(misses[c]) for c in CAUSES)
            + f" | {int(passes) if passes is not None else '-'} |"
        )
    return "\n".join(lines)


def registry_table(results: Sequence[RunResult]) -> str:
    """Bytes each registry sent, for workload pulls and for prefetches."""
    lines = ["| scenario | policy | registry | workload | prefetch |", "|" + " --- |" * 5]
    for result in results:
        for host, sent in result.bytes_by_registry.items():
            lines.append(
                f"| {result.scenario} | {result.policy} | {host} "
                f"| {size(sent.get(WORKLOAD, 0))} | {size(sent.get(PREFETCH, 0))} |"
            )
    return "\n".join(lines)


def pool_hit_rates(result: RunResult) -> dict[str, float]:
    """Hit rate of the pods bound in each node pool (CPU pods, GPU pods), by pool name."""
    bound: dict[str, list[bool]] = {}
    for pod in result.pods:
        if pod.bound_at is not None:
            bound.setdefault(pod.pool or "-", []).append(pod.hit)
    return {pool: sum(hits) / len(hits) for pool, hits in sorted(bound.items())}


def sources_table(results: Sequence[RunResult]) -> str:
    """Where each source of wanted images pays: hits per pool, bytes per registry, tail."""
    lines = [
        "| scenario | policy | hit rate | by pool | pulled per registry | image wait p95 | p99 |",
        "|" + " --- |" * 7,
    ]
    for result in results:
        f = result.figures()
        pools = " · ".join(f"{pool} {share(rate)}" for pool, rate in pool_hit_rates(result).items())
        pulled = " · ".join(
            f"{host.split('.')[0]} {size(sum(sent.values()))}"
            for host, sent in result.bytes_by_registry.items()
            if sum(sent.values())
        )
        lines.append(
            f"| {f['scenario']} | {f['policy']} | {share(f['hit_rate'])} | {pools} | {pulled} "
            f"| {seconds(f['wait_p95'])} | {seconds(f['wait_p99'])} |"
        )
    return "\n".join(lines)

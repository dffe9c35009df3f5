"""Why the slowest pods of the week waited to run: for each policy, the created→running tail
(the slowest 1 %), what kept its GPU pods from being bound, and how the scheduler placed
every GPU pod (where ImageLocality, not NodeResourcesFit, chose the node; where the node
name broke a tie).

    .venv/bin/python bench/week_tail.py --days 3 --policy none --policy image-sync+declared
    .venv/bin/python bench/week_tail.py --days 3 --seed 2 --scheduler-seed 1

docs/evaluation.md ("The roomy week's created→running p99 is the scheduler's draw") reads it.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import median

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.evaluate_virtual import VARIANTS, evaluation_config, knowing_bandwidths
from bench.week import DAY, SEED, static_list, week_pods, week_scenario
from simulator.nodes import GPU_RESOURCE
from simulator.outcomes import fmt_seconds, percentile
from simulator.scoring import resource_fit_score
from simulator.virtual import replay
from simulator.virtual.cluster import VirtualCluster
from simulator.virtual.pods import Pod
from simulator.virtual.scheduler import Scheduler, allocatable, filter_problem, image_locality

SAMPLE_SECONDS = 60.0  # how often a tail pod's wait is looked at


@dataclass
class RecordingScheduler(Scheduler):
    """The virtual scheduler, counting for each GPU pod it binds whether ImageLocality changed
    which nodes score highest (against NodeResourcesFit alone), and whether nodes tied."""

    moved: set[str] = field(default_factory=set)
    tied: int = 0
    placed: int = 0

    def choose(self, pod: Pod) -> str | None:
        chosen = super().choose(pod)
        if chosen is None or not pod.requests.get(GPU_RESOURCE):
            return chosen
        live = [node for _, node in sorted(self.nodes.items()) if not node.removed]
        images = pod.spec.images if pod.spec is not None else ()
        listed = {node.name: self.node_images(node) for node in live}
        spread = {i: sum(1 for held in listed.values() if i in held) / len(live) for i in images}
        fits: dict[str, float] = {}
        totals: dict[str, float] = {}
        for node in live:
            free = self.free(node.name)
            if filter_problem(pod, node, free) is None:
                fit = resource_fit_score(self.scoring, free, allocatable(node), pod.requests)
                fits[node.name] = fit
                totals[node.name] = fit + image_locality(images, listed[node.name], spread)
        best = _best(totals)
        self.placed += 1
        self.tied += len(best) > 1
        if best != _best(fits):  # ImageLocality changed which nodes score highest
            self.moved.add(pod.key)
        return chosen


def _best(scores: dict[str, float]) -> set[str]:
    top = max(scores.values())
    return {name for name, score in scores.items() if score == top}


def recording_scheduler(cluster: VirtualCluster) -> RecordingScheduler:
    """Put a RecordingScheduler in place of a cluster's scheduler, before it runs (nothing
    holds the first one until then)."""
    seed = cluster.scenario.scheduler_seed
    ties = None if seed is None else random.Random(seed)
    recording = RecordingScheduler(cluster.nodes, cluster.scenario.scoring, ties)
    cluster.scheduler = recording
    return recording


@dataclass(frozen=True)
class Tail:
    """What the slowest 1 % of one run waited for."""

    policy: str
    p99: float
    kinds: dict[str, int]  # "train, 4 GPUs" → pods
    image_wait_max: float
    short_minutes: int  # fewer free GPUs in the cluster than the pod asks
    split_minutes: int  # enough free GPUs, none with room on one node
    overtaken: float  # median count of pods created after it and bound before it
    freed_at_once: int  # bound when the GPUs it asks freed at once on its node
    moved: int  # GPU pods whose best nodes ImageLocality changed
    placed: int
    moved_neighbours: int  # ... among the pods that held a tail pod's node until it was bound
    neighbours: int
    tied: int


def _kind(pod: Pod) -> str:
    name = pod.spec.name if pod.spec is not None else pod.name
    return f"{name.split('-')[0]}, {pod.spec.gpus if pod.spec else 0} GPUs"


def tail(cluster: VirtualCluster, scheduler: RecordingScheduler, policy: str) -> Tail:
    """The slowest 1 % of a finished run, from its pods' lifetimes and the scheduler's counts."""
    end = cluster.loop.now
    pods = [p for p in cluster.workload if not (p.deleted and p.running_at is None)]

    def took(pod: Pod) -> float:
        return (pod.running_at if pod.running_at is not None else end) - pod.created

    slowest = sorted(pods, key=took, reverse=True)[: max(1, len(pods) // 100)]
    gpu_pods = [p for p in pods if p.spec and p.spec.gpus and p.bound_at is not None]
    on_node: dict[str, list[Pod]] = defaultdict(list)
    for pod in gpu_pods:
        on_node[pod.node].append(pod)
    removed = {e.node: e.at for e in cluster.scenario.events if e.action == "remove"}
    gpu_nodes = [n for n in cluster.nodes.values() if n.config.gpus]

    def free_gpus(at: float) -> list[int]:
        return [
            node.config.gpus
            - sum(
                p.spec.gpus if p.spec else 0
                for p in on_node[node.name]
                if p.bound_at is not None and p.bound_at <= at < (p.finished_at or end)
            )
            for node in gpu_nodes
            if node.joined <= at < removed.get(node.name, end + 1)
        ]

    def bound_at(pod: Pod) -> float:
        return pod.bound_at if pod.bound_at is not None else end

    short = split = freed = 0
    overtaken: list[int] = []
    neighbours: list[Pod] = []
    for pod in slowest:
        ask = pod.spec.gpus if pod.spec else 0
        bound = bound_at(pod)
        if ask:
            moment = pod.created + 1.0
            while moment < bound:
                free = free_gpus(moment)
                short += sum(free) < ask
                split += sum(free) >= ask and max(free, default=0) < ask
                moment += SAMPLE_SECONDS
        overtaken.append(
            sum(1 for p in gpu_pods if p.created > pod.created and bound_at(p) < bound)
        )
        there = [p for p in on_node[pod.node] if p is not pod and bound_at(p) < bound]
        ending = [p for p in there if p.finished_at == bound]
        freed += bool(ask) and sum(p.spec.gpus for p in ending if p.spec) >= ask
        neighbours += [p for p in there if (p.finished_at or end) >= bound]
    return Tail(
        policy=policy,
        p99=percentile([took(p) for p in pods], 99),
        kinds=dict(Counter(_kind(p) for p in slowest).most_common()),
        image_wait_max=max(p.image_wait(end) for p in slowest),
        short_minutes=short,
        split_minutes=split,
        overtaken=median(overtaken),
        freed_at_once=freed,
        moved=len(scheduler.moved),
        placed=scheduler.placed,
        moved_neighbours=sum(1 for p in neighbours if p.key in scheduler.moved),
        neighbours=len(neighbours),
        tied=scheduler.tied,
    )


def replay_tail(
    variant: str, policy: str, days: float, seed: int, scheduler_seed: int | None
) -> Tail:
    """One policy on the week's first `days`, with the recording scheduler."""
    scenario = replace(week_scenario(variant), scheduler_seed=scheduler_seed)
    pods = [pod for pod in week_pods(seed) if pod.at < days * DAY]
    work = replay.workload(scenario, pods, static_list())
    config = knowing_bandwidths(evaluation_config(), scenario)
    cluster = VirtualCluster(
        scenario, work.pods, replay.make_policy(policy, work, config), days * DAY
    )
    recording = recording_scheduler(cluster)
    cluster.run()
    return tail(cluster, recording, policy)


def table(tails: Sequence[Tail]) -> str:
    rows = [
        ("created→running p99", lambda t: fmt_seconds(t.p99)),
        ("tail (slowest 1 %)", lambda t: "; ".join(f"{k}: {n}" for k, n in t.kinds.items())),
        ("tail's image wait (max)", lambda t: fmt_seconds(t.image_wait_max)),
        ("minutes waited with fewer free GPUs than asked", lambda t: str(t.short_minutes)),
        ("minutes waited with enough free GPUs, not on one node", lambda t: str(t.split_minutes)),
        (
            "pods created after a tail pod and bound before it (median)",
            lambda t: f"{t.overtaken:g}",
        ),
        (
            "tail pods bound when their GPUs freed at once on the node",
            lambda t: str(t.freed_at_once),
        ),
        ("GPU pods whose best nodes ImageLocality changed", lambda t: f"{t.moved} of {t.placed}"),
        (
            "... among the pods that held a tail pod's node until it was bound",
            lambda t: f"{t.moved_neighbours} of {t.neighbours}",
        ),
        ("GPU pods with nodes tied for the top score", lambda t: str(t.tied)),
    ]
    lines = ["| | " + " | ".join(t.policy for t in tails) + " |", "|" + " --- |" * (len(tails) + 1)]
    lines += [f"| {label} | " + " | ".join(cell(t) for t in tails) + " |" for label, cell in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--days", type=float, default=3.0, help="replay the first N days")
    parser.add_argument("--variant", choices=VARIANTS, default="roomy")
    parser.add_argument(
        "--policy", action="append", help="none, image-sync, ... (repeatable; default three)"
    )
    parser.add_argument("--seed", type=int, default=SEED, help="the week's pods' seed")
    parser.add_argument("--scheduler-seed", type=int, help="draw among equal nodes")
    args = parser.parse_args(argv)
    policies = args.policy or ["none", "image-sync", "image-sync+declared"]
    tails = [
        replay_tail(args.variant, p, args.days, args.seed, args.scheduler_seed) for p in policies
    ]
    print(table(tails))
    return 0


if __name__ == "__main__":
    sys.exit(main())

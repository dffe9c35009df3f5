"""Stage 4, pulls: what each node misses, ordered (urgent, demand, score), batched, within
every cap."""

from __future__ import annotations

import hashlib
from collections import Counter
from itertools import filterfalse

from imagesync.config import Config
from prefetcher import pods
from prefetcher.eligibility import selector_mismatch
from prefetcher.model import NodeInfo, PullAction, PullKey
from prefetcher.planning.demand import cron_lead
from prefetcher.planning.images import MergedImage, size_on
from prefetcher.planning.starting import Starting, starting_pods
from prefetcher.planning.state import PlanState
from prefetcher.planning.targets import NodeTarget
from prefetcher.planning.timing import retry_at

# ((urgency, demand tier, -score, node, spread, image), why); urgency 0: a need named by a
# workload (rollout, CronJob run, pods waiting for capacity), 1: a new node or image, 2:
# routine. `spread` orders a node's images of equal rank (see `spread`).
Candidate = tuple[tuple[int, int, float, str, int, str], str]
NEW_NODE = "new node"


def node_candidates(
    state: PlanState,
    entry: NodeTarget,
    missing: list[str],
    starting: Starting,
    *,
    ranked: bool = True,
) -> list[Candidate]:
    """The pulls `entry`'s node could start now among its `missing` images (rank order);
    notes why the others wait. Not `ranked`: the candidates' demand tier and spread are left
    0 (a node whose pull slots are full starts none of them)."""
    config = state.config
    name = entry.node.name
    out: list[Candidate] = []
    here = state.pulling.on(name)
    if here:
        # (a node's puller most often pulls every image it misses: nothing to start there)
        if here.issuperset(missing):
            return out
        missing = list(filterfalse(here.__contains__, missing))
    for ref in missing:
        key = (name, ref)
        record = state.records.get(key)
        if record is not None and state.now < retry_at(record, config):
            state.wake(retry_at(record, config))
            continue
        image = state.by_image[ref]
        why, urgency = urgent_need(state, entry, image)
        if state.quiet and why == "routine":
            state.waiting[key] = f"quiet hours {config.quiet_hours} UTC: only urgent pulls"
            continue
        if name in starting.by_node:
            holder = starting.by_node[name]
            state.holding.add(holder)
            state.waiting.setdefault(key, f"held back while pod {holder} starts on the node")
            continue
        if image.registry in starting.by_registry and registry_share(state, image.registry) is None:
            # (With a known bandwidth the share throttles instead: `start_pulls`.)
            holder = starting.by_registry[image.registry]
            state.holding.add(holder)
            state.waiting[key] = f"held back while pod {holder} pulls from {image.registry}"
            continue
        if ranked:
            rank = (urgency, state.demand.tier(ref, name), -image.score, name, spread(name, ref))
            out.append(((*rank, ref), why))
        else:
            out.append(((urgency, 0, -image.score, name, 0, ref), why))
    return out


def spread(node: str, image: str) -> int:
    """The order of a node's images of equal rank: a hash of (node, image), so the nodes of a
    fleet pull them in different orders. In one order, every node would wait for the
    registry's answer before each image at the same moments (the registry idle meanwhile)
    and pull the same image at once (its `maxPullsPerImage` binding)."""
    digest = hashlib.blake2b(f"{node}\n{image}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def urgent_need(state: PlanState, entry: NodeTarget, image: MergedImage) -> tuple[str, int]:
    """Why pulling `image` to `entry`'s node is urgent (and how: 0 first), or routine (2)."""
    name, ref = entry.node.name, image.image
    demand = state.demand.of(ref)
    if demand is not None:
        if name in demand.urgent:
            return demand.urgent[name], 0
        if demand.next_run is not None:
            start = demand.next_run - cron_lead(size_on(image, entry.node), state.config)
            if state.now >= start:
                return "CronJob run due", 0
            state.wake(start)
    if entry.urgent_recent:
        return NEW_NODE, 1
    if image.new_in_use:
        return "new image in use", 1
    return "routine", 2


def registry_share(state: PlanState, registry: str) -> int | None:
    """How many prefetch pulls from `registry` fit at once within `prefetchBandwidthShare` of
    its known bandwidth (at least one), each expected at the rate measured from our pulls
    from it, else `pullDeadlineMinBandwidth`; None when its bandwidth is not known."""
    config = state.config
    bandwidth = dict(config.registry_bandwidth).get(registry.lower())
    if bandwidth is None:
        return None
    per_pull = state.throughput.get(registry) or float(config.pull_deadline_min_bandwidth)
    return max(1, int(config.prefetch_bandwidth_share * bandwidth / per_pull))


def node_pull_cap(node: NodeInfo, config: Config) -> int:
    """Pullers at once on `node`: `maxPullsPerNode`, one more where its kubelet pulls in
    parallel (`parallelPullNodes`): the next puller then starts beside the one in flight, so
    one's start and end overlap the other's pulls, and a workload pull still finds a slot."""
    selector = config.parallel_pull_nodes
    if selector is None or selector_mismatch(dict(selector), node.labels) is not None:
        return config.max_pulls_per_node
    return config.max_pulls_per_node + 1


def batch_limit(why: str, config: Config) -> int:
    """Images a new puller takes: `joinPullBatchSize` on a node that just joined (no workload
    pod starts there, or it would have no candidates), so its images follow one another with
    no puller's start, end and next pass between them; else `pullBatchSize`."""
    if why == NEW_NODE:
        return max(config.pull_batch_size, config.join_pull_batch_size)
    return config.pull_batch_size


def choose_pulls(state: PlanState) -> None:
    """Candidates in order (urgency, demand tier, score, node, then a node's own order of its
    images of equal rank), batched per node, each puller within every cap."""
    starting = starting_pods(state)
    candidates: list[Candidate] = []
    busy = Counter(pod.node for pod, _ in state.in_flight.values())
    for entry in state.targets.values():
        if entry.problem is not None:
            continue
        full = busy[entry.node.name] >= node_pull_cap(entry.node, state.config)
        mine = node_candidates(state, entry, state.missing(entry), starting, ranked=not full)
        if full:
            # A node whose pullers fill its slots starts nothing this pass: its candidates
            # wait without being ranked against the fleet's (most of them, while a fleet
            # converges).
            for key, _why in mine:
                state.waiting.setdefault((key[3], key[-1]), "waiting for a pull slot")
        else:
            candidates += mine
    start_pulls(state, candidates, starting)


def start_pulls(state: PlanState, candidates: list[Candidate], starting: Starting) -> None:
    """Start the candidates, best first, while every cap allows, batched per node."""
    if not candidates:
        return
    config = state.config
    candidates.sort()
    by_node: dict[str, list[str]] = {}
    for key, _why in candidates:
        by_node.setdefault(key[3], []).append(key[-1])
    puller_names = {p.name for p in state.pullers}
    flying = list(state.in_flight.values())
    per_node = Counter(pod.node for pod, _ in flying)
    per_image, per_registry = (Counter(counts) for counts in state.flight_counts())
    total = len(flying)
    taken: set[PullKey] = set()
    shares: dict[str, int | None] = {}
    for key, why in candidates:
        name, ref = key[3], key[-1]
        if (name, ref) in taken:
            continue
        image = state.by_image[ref]
        if image.registry not in shares:
            # The share applies while a workload pod pulls from the registry; otherwise the
            # registry serves nobody else, and only the pull caps apply.
            throttled = image.registry in starting.by_registry
            shares[image.registry] = registry_share(state, image.registry) if throttled else None
        share = shares[image.registry]
        if share is not None and per_registry[image.registry] >= share:
            state.holding.add(starting.by_registry[image.registry])
            state.waiting.setdefault(
                (name, ref),
                f"waiting: prefetches from {image.registry} at their share of its bandwidth",
            )
            continue
        node = state.targets[name].node
        if (
            total >= config.max_concurrent_pulls
            or per_node[name] >= node_pull_cap(node, config)
            or per_image[ref] >= config.max_pulls_per_image
            or per_registry[image.registry] >= config.max_pulls_per_registry
        ):
            state.waiting.setdefault((name, ref), "waiting for a pull slot")
            continue
        record = state.records.get((name, ref))
        batch = [ref]
        if record is None:
            # A retry is pulled alone; first tries share a pod with the node's next
            # candidates from the same registry that are first tries too.
            limit = batch_limit(why, config)
            for other in by_node[name]:
                if len(batch) >= limit:
                    break
                if (
                    other != ref
                    and (name, other) not in taken
                    and (name, other) not in state.records
                    and state.by_image[other].registry == image.registry
                    and per_image[other] < config.max_pulls_per_image
                ):
                    batch.append(other)
        pod_name = pods.puller_name(name, batch)
        if pod_name in puller_names:
            for ref_ in batch:
                state.waiting[(name, ref_)] = "waiting for the previous puller to be removed"
            continue
        taken.update((name, r) for r in batch)
        total += 1
        per_node[name] += 1
        per_image.update(batch)
        per_registry[image.registry] += 1
        sizes = [size_on(state.by_image[r], node) for r in batch]
        size = sum(sizes)
        deadline = pods.puller_backstop(sizes, config)
        attempt = (record.attempts if record else 0) + 1
        state.pulls.append(
            PullAction(
                node=name,
                images=tuple(batch),
                pod_name=pod_name,
                urgent=why != "routine",
                why=why,
                score=image.score,
                size=size,
                deadline_seconds=deadline,
                attempt=attempt,
                pod=pods.build_puller(
                    node, batch, config, deadline_seconds=deadline, attempt=attempt
                ),
            )
        )

"""Where each image is needed now and soon, from workload templates and the pods that run.

Read from `Snapshot.demand` before the other stages. It gives the pulls an ordering (pull
first where the image is most likely needed: tier 0, nodes running its workloads' pods or
the image itself, and nodes an urgent need names; tier 1, other nodes of the pools those run
in or its pods ran in before; tier 2, the rest), names urgent needs (a rollout, a CronJob's
next run, pods waiting for capacity), keeps images of live templates wanted, releases an
image a rollout left behind, and, for images placed by demand, the nodes they are limited to.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from imagesync.config import Config
from prefetcher.model import Demand, NodeInfo, Workload
from prefetcher.planning.images import recent

Pool = tuple[str, ...]

TIER_NEEDED, TIER_POOL, TIER_REST = 0, 1, 2


@dataclass
class ImageDemand:
    """What is known about where one image is needed."""

    nodes: set[str] = field(default_factory=set)  # running its workloads' pods or the image
    urgent: dict[str, str] = field(default_factory=dict)  # node → why (rollout)
    pools: set[Pool] = field(default_factory=set)  # where it runs, or its pods ran before
    templated: bool = False  # a live workload template uses it
    need: int = 0  # pods its workloads ask for
    every_node: bool = False  # a DaemonSet uses it
    waiting: int = 0  # pods waiting for capacity that use it
    next_run: datetime | None = None  # the earliest next run of a CronJob using it

    @property
    def signal(self) -> bool:
        """Anything known about where it runs (else demand placement means every node)."""
        return bool(self.nodes or self.templated or self.waiting or self.urgent or self.pools)


@dataclass
class DemandIndex:
    """Per image, its demand; per node, its pool; images a rollout released, and when."""

    images: dict[str, ImageDemand]
    pools: dict[str, Pool]
    released: dict[str, datetime]  # image → when a rollout released it (only unused images)
    release_at: list[datetime]  # future releases, for the plan's wake-up

    def of(self, image: str) -> ImageDemand | None:
        return self.images.get(image)

    def tier(self, image: str, node: str) -> int:
        """0: needed on the node; 1: in a pool where it runs; 2: the rest."""
        demand = self.images.get(image)
        if demand is None:
            return TIER_REST
        if node in demand.nodes or node in demand.urgent:
            return TIER_NEEDED
        if self.pools.get(node) in demand.pools:
            return TIER_POOL
        return TIER_REST


def node_pool(node: NodeInfo, labels: Iterable[str]) -> Pool:
    """The values of the pool labels on `node` ("" where one is missing)."""
    return tuple(node.labels.get(label, "") for label in labels)


def next_run(workload: Workload, now: datetime) -> datetime | None:
    """The next scheduled run of a CronJob after `now`, in its time zone; None when its
    schedule cannot be read."""
    if not workload.schedule:
        return None
    try:
        zone = ZoneInfo(workload.time_zone) if workload.time_zone else None
    except (ZoneInfoNotFoundError, ValueError):
        return None
    start = now.astimezone(zone) if zone is not None else now
    try:
        moment: datetime = croniter(workload.schedule, start).get_next(datetime)
    except (ValueError, KeyError):
        return None
    return moment.astimezone(now.tzinfo)


def top_owner(owner: str, parents: Mapping[str, str]) -> str:
    """A ReplicaSet's Deployment, a Job's CronJob; else the owner itself."""
    return parents.get(owner, owner)


class DemandMemo:
    """What `demand_index` may keep between passes: each node's pool (while the NodeInfo is
    the same object) and the nodes of the running pods (while `Demand.running` is)."""

    def __init__(self) -> None:
        self._pools: dict[str, tuple[NodeInfo, Pool]] = {}
        self._running: tuple[object, object, RunningNodes] | None = None
        self._index: tuple[Demand, tuple[object, ...], DemandIndex] | None = None

    def index(self, demand: Demand, inputs: tuple[object, ...]) -> DemandIndex | None:
        """The last pass's index, if it was made of the same `demand` object and `inputs`."""
        hit = self._index
        return hit[2] if hit is not None and hit[0] is demand and hit[1] == inputs else None

    def keep(self, demand: Demand, inputs: tuple[object, ...], index: DemandIndex) -> None:
        self._index = (demand, inputs, index)

    def pools(self, nodes: list[NodeInfo], labels: tuple[str, ...]) -> dict[str, Pool]:
        known, self._pools = self._pools, {}
        out: dict[str, Pool] = {}
        for node in nodes:
            hit = known.get(node.name)
            if hit is None or hit[0] is not node:
                hit = (node, node_pool(node, labels))
            self._pools[node.name] = hit
            out[node.name] = hit[1]
        return out

    def running(self, demand: Demand) -> RunningNodes:
        hit = self._running
        if hit is None or hit[0] is not demand.running or hit[1] is not demand.parents:
            hit = self._running = (demand.running, demand.parents, running_nodes(demand))
        return hit[2]


# Per workload (its top owner) and per image, the nodes its running pods are bound to.
RunningNodes = tuple[dict[str, set[str]], dict[str, set[str]]]


def running_nodes(demand: Demand) -> RunningNodes:
    """The nodes running each workload's pods, and each image."""
    workload_nodes: dict[str, set[str]] = {}
    image_nodes: dict[str, set[str]] = {}
    for pod in demand.running:
        if pod.workload:
            owner = top_owner(pod.workload, demand.parents)
            workload_nodes.setdefault(owner, set()).add(pod.node)
        for image in pod.images:
            image_nodes.setdefault(image, set()).add(pod.node)
    return workload_nodes, image_nodes


def demand_index(
    demand: Demand,
    nodes: Iterable[NodeInfo],
    config: Config,
    now: datetime,
    memo: DemandMemo | None = None,
) -> DemandIndex:
    """The index of `demand` for this planning step (`memo`: what earlier steps kept)."""
    node_list = list(nodes)
    joined = [
        n.name for n in node_list if recent(n.ready_since or n.created, now, config.urgent_window)
    ]
    runs = [next_run(workload, now) for workload in demand.workloads]
    if memo is None:
        pools = {node.name: node_pool(node, config.node_pool_labels) for node in node_list}
        return _index(demand, config, now, pools, running_nodes(demand), joined, runs)
    pools = memo.pools(node_list, config.node_pool_labels)
    # Time changes the index only through these: which nodes joined recently, the CronJobs'
    # next runs, and which rollouts' grace periods ended.
    grace = timedelta(seconds=config.rollout_grace)
    ended = tuple(r.at + grace <= now for r in demand.rollouts)
    inputs = (pools, joined, runs, ended)
    index = memo.index(demand, inputs)
    if index is None:
        index = _index(demand, config, now, pools, memo.running(demand), joined, runs)
        memo.keep(demand, inputs, index)
    return index


def _index(
    demand: Demand,
    config: Config,
    now: datetime,
    pools: dict[str, Pool],
    running_on: RunningNodes,
    joined: list[str],
    runs: list[datetime | None],
) -> DemandIndex:
    """The index itself (`demand_index` finds its inputs, or the last pass's index)."""
    workload_nodes, image_nodes = running_on
    images: dict[str, ImageDemand] = {
        image: ImageDemand(nodes=set(names)) for image, names in image_nodes.items()
    }

    def of(image: str) -> ImageDemand:
        return images.setdefault(image, ImageDemand())

    for workload, run in zip(demand.workloads, runs, strict=True):
        running = workload_nodes.get(workload.key, set())
        for image in workload.images:
            entry = of(image)
            entry.templated = True
            entry.nodes |= running
            if workload.replicas is None:
                entry.every_node = True
            else:
                entry.need += workload.replicas
            if run is not None and (entry.next_run is None or run < entry.next_run):
                entry.next_run = run
    for waiting in demand.unschedulable:
        for image in waiting.images:
            of(image).waiting += 1
    for entry in images.values():
        if entry.waiting:
            for name in joined:
                entry.urgent.setdefault(name, "pods waiting for capacity")
    released: dict[str, datetime] = {}
    release_at: list[datetime] = []
    templated = {image for image, entry in images.items() if entry.templated}
    for rollout in sorted(demand.rollouts, key=lambda r: (r.at, r.workload)):
        old_nodes = workload_nodes.get(rollout.workload, set()) | {
            node for image in rollout.old_images for node in image_nodes.get(image, ())
        }
        for image in rollout.new_images:
            for name in sorted(old_nodes):
                of(image).urgent.setdefault(name, f"rollout of {rollout.workload}")
        when = rollout.at + timedelta(seconds=config.rollout_grace)
        for image in sorted(set(rollout.old_images) - set(rollout.new_images)):
            known = images.get(image)
            if image in templated or (known is not None and (known.nodes or known.waiting)):
                continue
            if when <= now:
                released[image] = when
            else:
                release_at.append(when)
    for entry in images.values():
        entry.pools = {pools[name] for name in entry.nodes if name in pools}
    for image, ran_in in demand.ran_in.items():
        of(image).pools |= ran_in
    return DemandIndex(images, pools, released, release_at)


def cron_lead(size: int, config: Config) -> timedelta:
    """How long before a CronJob's run its image should start to be pulled."""
    return timedelta(seconds=config.cron_lead_time + size / config.pull_deadline_min_bandwidth)


@lru_cache(maxsize=65536)  # pure, and asked for every node of every image placed by demand
def spread_order(image: str, node: str) -> str:
    """A per-image node order, so images limited to a few nodes do not all pick the same."""
    return hashlib.sha256(f"{image}\0{node}".encode()).hexdigest()


def demand_nodes(index: DemandIndex, image: str, eligible: list[str]) -> frozenset[str] | None:
    """The eligible nodes an image placed by demand is limited to; None: all of them (a
    DaemonSet's image, or one about which nothing is known yet).

    Tiers 0 and 1, then as many more nodes as its workloads still ask pods for."""
    demand = index.of(image)
    if demand is None or demand.every_node or not demand.signal:
        return None
    chosen = {name for name in eligible if index.tier(image, name) <= TIER_POOL}
    extra = demand.need + demand.waiting - len(chosen)
    if extra > 0:
        rest = sorted(
            (n for n in eligible if n not in chosen), key=lambda n: spread_order(image, n)
        )
        chosen.update(rest[:extra])
    return frozenset(chosen)

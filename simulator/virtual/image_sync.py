"""image-sync in virtual time: the real planner (`prefetcher.planning.incremental`, equal to
`prefetcher.planner.plan`) driven the way the prefetcher's controller drives it, on a
Snapshot built from the virtual cluster as the controller's informers would see it.

- CachedImages come from the webhook model (`learner.py`): learned at pod creation with the
  pod's placement profile, written at the recorder's next flush; Declared ones at the start.
- Our puller and keeper pods are `ManagedPod`s with the container states the kubelet reports;
  nodes are `NodeInfo` with `status.images` hints (the 50 largest); starting workload pods hold
  back pulls on their node and at their registries, and make a puller on their node yield;
  pull records are carried from plan to plan; the demand informers' view (`Snapshot.demand`)
  holds the workload pods bound to nodes, by owner, the pods the scheduler could not place,
  and the pools each image's pods ran in (workload templates are not modelled: pods come
  from a trace).
- Passes run when the controller's would (`prefetcher/controller.py`): after a trigger (a node
  joined, turned Ready, changed or left; a CachedImage was created or its spec changed; one of
  our pods changed, except a keeper's containers coming up that the last plan did not wait
  for, `Plan.guard_waits`; a starting workload pod that it held a pull back for,
  `Plan.holding`, started; one began starting where we pull), at
  once or `passCoalesce` after the previous pass, on the sweep
  every `sweepInterval`, and at `Plan.wake_at`.
- The Plan is carried out as the controller does: keepers, deletions, pulls (each puller pulls
  its images one after another through the node's kubelet queue), status writes.

Not modelled: the controller's 30 s throttle of count-only status writes (status never
changes a plan's pulls), API latency and errors, leader election.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from imagesync.config import Config
from prefetcher.budgethold import BudgetHold
from prefetcher.model import (
    BudgetExclusion,
    ContainerObservation,
    Demand,
    ManagedPod,
    NodeInfo,
    Plan,
    PullKey,
    PullRecord,
    RunningPod,
    Snapshot,
    StartingPod,
    Taint,
    UnschedulablePod,
)
from prefetcher.observe import parse_quantity
from prefetcher.planning.incremental import IncrementalPlanner
from prefetcher.poolhistory import PoolHistory
from prefetcher.triggers import own_pod_trigger, started_trigger
from simulator.nodes import NodeConfig
from simulator.nodestatus import node_allocatable
from simulator.virtual.learner import Learner
from simulator.virtual.loop import Timer
from simulator.virtual.node import registry_host
from simulator.virtual.pods import IF_NOT_PRESENT, NEVER, Container, Pod, PodSpec
from simulator.virtual.policy import Policy

if TYPE_CHECKING:
    from simulator.virtual.cluster import VirtualCluster
    from simulator.virtual.node import VirtualNode

# Virtual second 0 as a date: a Monday, midnight UTC (scores change at UTC midnight).
EPOCH = datetime(2026, 1, 5, tzinfo=UTC)


def moment(seconds: float) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def _when(seconds: float | None) -> datetime | None:
    return None if seconds is None else moment(seconds)


# What a container observation is made from, besides its image and place in the pod.
ContainerKey = tuple[str, str, str, float | None, float | None]


def container_observation(index: int, c: Container) -> ContainerObservation:
    """One container of a puller or keeper as the kubelet reports it."""
    return ContainerObservation(
        name=f"c{index}",
        image=c.image,
        state="waiting"
        if c.state == "waiting"
        else ("running" if c.state == "running" else "terminated"),
        reason=c.reason,
        message=c.message,
        exit_code=0 if c.state == "terminated" else None,
        started_at=_when(c.started_at),
        finished_at=_when(c.finished_at),
        init=c.init,
    )


def managed_pod(
    pod: Pod, before: Sequence[tuple[ContainerKey, ContainerObservation]] = ()
) -> tuple[ManagedPod, list[tuple[ContainerKey, ContainerObservation]]]:
    """A puller or keeper as the planner reads it from the API, and its containers with what
    each was read from (`before`: the same pod's, read earlier: unchanged ones are kept)."""
    observed: list[tuple[ContainerKey, ContainerObservation]] = []
    for index, c in enumerate(pod.containers):
        key = (c.state, c.reason, c.message, c.started_at, c.finished_at)
        if index < len(before) and before[index][0] == key:
            observed.append(before[index])
        else:
            observed.append((key, container_observation(index, c)))
    containers = tuple(observation for _, observation in observed)
    return ManagedPod(
        name=pod.name,
        uid=pod.uid,
        node=pod.node,
        role="puller" if pod.role == "puller" else "keeper",
        images=pod.images,
        phase=pod.phase,
        reason=pod.reason,
        message=pod.message,
        containers=containers,
        created=moment(pod.created),
        active_deadline=int(pod.deadline) if pod.deadline is not None else None,
        attempt=pod.attempt,
    ), observed


def starting_pod(pod: Pod) -> StartingPod:
    """A workload pod starting on its node as `prefetcher.observe.starting_pod` reads it: the
    images its containers still wait for, and their registries."""
    images = tuple(dict.fromkeys(c.image for c in pod.containers if c.state == "waiting"))
    return StartingPod(
        pod.node,
        pod.key,
        moment(pod.bound_at or pod.created),
        registries=tuple(sorted({registry_host(i) for i in images} - {""})),
        images=images,
    )


def running_pod(pod: Pod) -> RunningPod:
    """A workload pod bound to a node, as `prefetcher.workloads.running_pod` reads it."""
    spec = pod.spec
    owner = spec.owner if spec is not None else ""
    workload = f"{spec.owner_kind}/{spec.namespace}/{owner}" if spec and owner else ""
    return RunningPod(pod.node, workload, spec.images if spec is not None else ())


def allocatable_amounts(config: NodeConfig) -> dict[str, float]:
    """The node's `status.allocatable` as `prefetcher.observe.node_info` reads it."""
    return {
        name: amount
        for name, value in node_allocatable(config).items()
        if (amount := parse_quantity(value)) is not None
    }


def node_info(node: VirtualNode) -> NodeInfo:
    """A node as `prefetcher.observe.node_info` reads its Node object."""
    config = node.config
    return NodeInfo(
        name=node.name,
        uid=f"node-{node.name}",
        labels=dict(node.labels),
        taints=tuple(
            Taint(str(t.get("key", "")), str(t.get("value") or ""), str(t.get("effect") or ""))
            for t in node.taints
        ),
        ready=node.ready,
        unschedulable=node.unschedulable,
        disk_pressure=node.store.disk_pressure(),
        arch=config.arch,
        os=config.os,
        gpu_allocatable=config.gpus,
        allocatable=allocatable_amounts(config),
        image_fs_capacity=config.disk,
        hinted_images=node.top_images(),
        created=moment(node.joined),
        ready_since=moment(node.ready_since) if node.ready else None,
    )


class ImageSync(Policy):
    """The webhook's learning plus the prefetcher's passes, in virtual time."""

    def __init__(
        self, config: Config, name: str = "image-sync", declared: Sequence[Mapping[str, Any]] = ()
    ) -> None:
        self.name = name
        self.config = config
        self.planner = IncrementalPlanner(config)
        self.declared = list(declared)
        self.cluster: VirtualCluster | None = None
        self.learner = Learner(config, moment, self.trigger)
        self.own: dict[str, Pod] = {}
        self._own_on: dict[str, dict[str, Pod]] = {}  # node → our pods there, by name
        self.records: dict[PullKey, PullRecord] = {}
        self.throughput: dict[str, float] = {}
        self.passes = 0
        self.pulls_started = 0
        self.pulled_pairs: set[tuple[str, str]] = set()
        self.left_out_pairs: set[tuple[str, str]] = set()
        self._left_out: tuple[BudgetExclusion, ...] = ()
        self._plan: Plan | None = None  # the last pass's: which changes it waits for
        self.bound_pending: dict[str, Pod] = {}
        # Workload pods bound to a node (running or starting), as the demand informers see them.
        self.running: dict[str, RunningPod] = {}
        self.pool_history = PoolHistory(
            config.node_pool_labels, timedelta(seconds=config.image_retention)
        )
        self.budget_hold = BudgetHold(timedelta(seconds=config.budget_hold))
        self._demand: (
            tuple[tuple[UnschedulablePod, ...], Mapping[str, frozenset[str]], Demand] | None
        ) = None
        self._timer: Timer | None = None
        self._last_pass = -math.inf
        self._flush: Timer | None = None
        self._next_sweep = 0.0
        self._wake_at = float("inf")
        self._node_cache: dict[str, tuple[tuple[Any, ...], NodeInfo]] = {}
        # uid → (version, the pod as read, its containers with what each was read from)
        self._pod_cache: dict[
            str, tuple[int, ManagedPod, list[tuple[ContainerKey, ContainerObservation]]]
        ] = {}
        # Our pods as read for the last snapshot, until one of them changes or comes or goes.
        self._pods_read: tuple[ManagedPod, ...] | None = None

    # -- hooks ------------------------------------------------------------------------
    def attach(self, cluster: VirtualCluster) -> None:
        self.cluster = cluster
        if self.declared:
            self.learner.declare(self.declared, cluster.loop.now)
        self._schedule(cluster.loop.now)

    def admit(self, spec: PodSpec) -> PodSpec:
        assert self.cluster is not None
        now = self.cluster.loop.now
        spec, seen = self.learner.admit(spec, now)
        if seen and self._flush is None:
            interval = self.config.learn_flush_interval
            due = (int(now / interval) + 1) * interval
            self._flush = self.cluster.loop.at(due, self._flush_now)
        return spec

    def _flush_now(self) -> None:
        assert self.cluster is not None
        self._flush = None
        self.learner.flush(self.cluster.loop.now)

    def pod_changed(self, pod: Pod) -> None:
        if pod.role != "workload":
            if pod.name in self.own:
                self._pods_read = None
                reason: str | None = "pod changed"
                if pod.role == "keeper":  # (read at each change: `before` is the last one)
                    before = self._pod_cache.get(pod.uid)
                    old = before[1] if before is not None else None
                    reason = own_pod_trigger(old, self._read(pod), self._plan)
                if reason is not None:
                    self.trigger(reason)
            return
        if pod.node and not pod.ended:
            if pod.key not in self.running:
                self.running[pod.key] = running_pod(pod)
                self._saw(self.running[pod.key])
                self._demand = None
        elif (ran := self.running.pop(pod.key, None)) is not None:
            self._saw(ran)
            self._demand = None
        if pod.node and pod.phase == "Pending" and not pod.deleted:
            new = pod.key not in self.bound_pending
            self.bound_pending[pod.key] = pod
            if new and self._pulling_on(pod.node):
                self.trigger("workload pod starting")  # a puller there may have to yield
            elif new and not self._keeper_holds(pod):
                self.trigger("workload pod bound")  # the node's disk budget gives way to it
        elif self.bound_pending.pop(pod.key, None) is not None and started_trigger(
            pod.key, self._plan
        ):
            self.trigger("workload pod started")  # the last plan held a pull back for it

    def _saw(self, pod: RunningPod) -> None:
        """Remember the pool a workload pod runs in and the images its node's pods used (as
        the controller's demand watch does)."""
        assert self.cluster is not None
        now = moment(self.cluster.loop.now)
        self.budget_hold.saw(pod.node, pod.images, now)
        node = self.cluster.nodes.get(pod.node)
        if node is not None:
            self.pool_history.saw(pod.images, node.labels, now)

    def _keeper_holds(self, pod: Pod) -> bool:
        """As `prefetcher.triggers.keeper_holds`: our keeper on the pod's node holds every
        image it waits for."""
        held = {
            image
            for own in self._own_on.get(pod.node, {}).values()
            if own.role == "keeper" and not own.ended
            for image in own.images
        }
        return held.issuperset(starting_pod(pod).images)

    def _pulling_on(self, node: str) -> bool:
        return any(p.role == "puller" and not p.ended for p in self._own_on.get(node, {}).values())

    def _keep(self, pod: Pod) -> None:
        """One of our pods was created."""
        self.own[pod.name] = pod
        self._own_on.setdefault(pod.node, {})[pod.name] = pod
        self._pods_read = None

    def _forget(self, pod: Pod) -> None:
        """One of our pods was deleted."""
        del self.own[pod.name]
        self._own_on[pod.node].pop(pod.name, None)
        self._pods_read = None

    def node_added(self, node: VirtualNode) -> None:
        self.trigger("node joined")

    def node_changed(self, node: VirtualNode, reason: str) -> None:
        self.trigger(reason)

    def node_removed(self, node: VirtualNode) -> None:
        assert self.cluster is not None
        for pod in [p for p in self.own.values() if p.node == node.name]:
            # The Node's ownerReference takes its pods with it.
            self.cluster.delete_pod(pod)
            self._forget(pod)
        self.trigger("node removed")

    def targeted(self, node: str, image: str) -> bool:
        return (node, image) in self.pulled_pairs or image in self.learner.images

    def left_out(self, node: str, image: str) -> bool:
        return (node, image) in self.left_out_pairs

    def known_at(self, image: str) -> float | None:
        return self.learner.known_at.get(image)

    def stats(self) -> dict[str, float]:
        return {"passes": self.passes, "pulls_started": self.pulls_started}

    # -- when to plan -------------------------------------------------------------------
    def trigger(self, reason: str) -> None:
        """Ask for a pass: at once, or `passCoalesce` after the last one (the reason only
        matters to the report)."""
        if self.cluster is None:
            return
        self._schedule(max(self.cluster.loop.now, self._last_pass + self.config.pass_coalesce))

    def _schedule(self, at: float) -> None:
        assert self.cluster is not None
        if self._timer is not None and not self._timer.cancelled and self._timer.at <= at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.cluster.loop.at(at, self._pass)

    def _pass(self) -> None:
        assert self.cluster is not None
        self._timer = None
        now = self.cluster.loop.now
        self._last_pass = now
        sweep = now >= self._next_sweep
        if sweep:
            self._next_sweep = now + self.config.sweep_interval
        # As the controller plans: from scratch at a sweep, incrementally between sweeps (the
        # same Plan as `plan()`, which its property tests hold it to).
        snapshot = self.snapshot()
        plan = self.planner.full(snapshot) if sweep else self.planner.plan(snapshot)
        self.passes += 1
        self.records = dict(plan.pull_records)
        self.throughput = dict(plan.pull_throughput)
        self._plan = plan
        if plan.budget_left_out is not self._left_out:  # (the same tuple while unchanged)
            self._left_out = plan.budget_left_out
            self.left_out_pairs = {(b.node, b.image) for b in plan.budget_left_out}
        self._execute(plan)
        wake = plan.wake_at.timestamp() - EPOCH.timestamp() if plan.wake_at else float("inf")
        self._schedule(min(self._next_sweep, wake))

    # -- what the informers hold --------------------------------------------------------
    def snapshot(self) -> Snapshot:
        assert self.cluster is not None
        now = self.cluster.loop.now
        nodes = []
        for node in self.cluster.live_nodes():
            store = node.store
            key = (node.ready, node.ready_since, node.unschedulable, len(store.images), store.used)
            cached = self._node_cache.get(node.name)
            if cached is None or cached[0] != key:
                cached = (key, node_info(node))
                self._node_cache[node.name] = cached
            nodes.append(cached[1])
        if self._pods_read is None:
            self._pods_read = tuple(self._read(pod) for pod in self.own.values())
        starting = tuple(starting_pod(pod) for pod in self.bound_pending.values() if pod.starting())
        return Snapshot(
            now=moment(now),
            nodes=tuple(nodes),
            images=self.learner.wanted(),
            pods=self._pods_read,
            pull_records=dict(self.records),
            pull_throughput=dict(self.throughput),
            starting=starting,
            demand=self.demand(),
        )

    def _read(self, pod: Pod) -> ManagedPod:
        """Our pod as the informer holds it, read again only after it changed."""
        hit = self._pod_cache.get(pod.uid)
        if hit is None or hit[0] != pod.version:
            read, observed = managed_pod(pod, hit[2] if hit is not None else ())
            hit = (pod.version, read, observed)
            self._pod_cache[pod.uid] = hit
        return hit[1]

    def demand(self) -> Demand:
        """Where images are needed: the workload pods bound to nodes, and those the scheduler
        could not place (the same object while neither changed)."""
        assert self.cluster is not None
        waiting = tuple(
            UnschedulablePod(pod.key, pod.spec.images if pod.spec is not None else ())
            for pod in self.cluster.scheduler.pending
            if not pod.ended
        )
        now = moment(self.cluster.loop.now)
        used = self.budget_hold.used(now)
        if self._demand is None or self._demand[0] != waiting or self._demand[1] != used:
            demand = Demand(
                running=tuple(self.running.values()),
                unschedulable=waiting,
                ran_in=self.pool_history.pools(now),
                pods_used=used,
            )
            self._demand = (waiting, used, demand)
        return self._demand[2]

    # -- carrying out a plan ------------------------------------------------------------
    def _execute(self, plan: Plan) -> None:
        cluster = self.cluster
        assert cluster is not None
        tools = self.config.tools_image
        for keeper in plan.keepers:
            if keeper.pod_name in self.own or cluster.nodes.get(keeper.node) is None:
                continue
            containers = [Container(tools, IF_NOT_PRESENT, init=True, exits=True)]
            containers += [Container(image, NEVER) for image in keeper.images]
            self._keep(
                cluster.own_pod(
                    keeper.node, "keeper", keeper.pod_name, containers, images=tuple(keeper.images)
                )
            )
        for deletion in plan.deletions:
            pod = self.own.get(deletion.name)
            if pod is not None and (not deletion.uid or pod.uid == deletion.uid):
                self._forget(pod)
                self._pod_cache.pop(pod.uid, None)
                cluster.delete_pod(pod)
        for pull in plan.pulls:
            if pull.pod_name in self.own:
                continue  # 409: already there
            containers = [Container(tools, IF_NOT_PRESENT, init=True, exits=True)]
            containers += [Container(image, IF_NOT_PRESENT, exits=True) for image in pull.images]
            self.pulls_started += len(pull.images)
            self.pulled_pairs.update((pull.node, image) for image in pull.images)
            self._keep(
                cluster.own_pod(
                    pull.node,
                    "puller",
                    pull.pod_name,
                    containers,
                    images=tuple(pull.images),
                    deadline=float(pull.deadline_seconds),
                    attempt=pull.attempt,
                )
            )
        for update in plan.status_updates:
            self.learner.report(update.name, update.patch)

"""A whole cluster in virtual time: nodes, registries, scheduler, kubelets, the workload and
node events of a scenario or trace, and one cache policy acting on them.

    result = VirtualCluster(scenario, pods, policy, length).run()

Nothing here reads a clock or starts a thread: the same inputs give the same result.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

from simulator.nodes import GPU_RESOURCE, NodeConfig
from simulator.scenario import NodeEvent, Scenario
from simulator.virtual.kubelet import Kubelets
from simulator.virtual.loop import EventLoop
from simulator.virtual.network import Network
from simulator.virtual.node import VirtualNode
from simulator.virtual.pods import ALWAYS, IF_NOT_PRESENT, Container, Pod, PodRole, PodSpec
from simulator.virtual.policy import Policy
from simulator.virtual.results import RunResult, collect_result
from simulator.virtual.scheduler import Scheduler

REPLACED_KINDS = frozenset({"ReplicaSet", "StatefulSet", "Job", "DaemonSet"})


def default_pull_policy(image: str) -> str:
    """The API server's default: Always for `:latest` or an untagged image, else IfNotPresent."""
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return IF_NOT_PRESENT
    return ALWAYS if ":" not in last or last.endswith(":latest") else IF_NOT_PRESENT


class VirtualCluster:
    """One run: build it, `run()` it, read the RunResult."""

    def __init__(
        self, scenario: Scenario, pods: Sequence[PodSpec], policy: Policy, length: float
    ) -> None:
        self.scenario = scenario
        self.policy = policy
        self.length = length
        self.loop = EventLoop()
        self.registries = scenario.build_registries(0.0)
        self.network = Network(self.loop, self.registries)
        self.nodes: dict[str, VirtualNode] = {}
        self.kubelets = Kubelets(self.loop, self.nodes, self._pod_changed)
        ties = None if scenario.scheduler_seed is None else random.Random(scenario.scheduler_seed)
        self.scheduler = Scheduler(self.nodes, scenario.scoring, ties)
        self.workload: list[Pod] = []
        self.first_seen: dict[str, float] = {}
        self.joined: list[VirtualNode] = []
        self._uid = 0
        self._live: list[VirtualNode] | None = None
        self._pool_size = {pool.name: pool.count for pool in scenario.pools}
        for config in scenario.initial_nodes():
            self._add_node(config, scenario.pool(config.pool).name if config.pool else "")
        for spec in pods:
            self.loop.at(spec.at, lambda spec=spec: self._create(spec))  # type: ignore[misc]
        for event in scenario.events:
            self.loop.at(event.at, lambda event=event: self._apply(event))  # type: ignore[misc]

    # -- running ----------------------------------------------------------------------
    def run(self) -> RunResult:
        self.policy.attach(self)
        self.loop.run(self.length)
        return collect_result(self)

    def new_uid(self) -> str:
        self._uid += 1
        return f"uid-{self._uid:07d}"

    # -- nodes ------------------------------------------------------------------------
    def live_nodes(self) -> list[VirtualNode]:
        """The nodes present, by name (kept between node joins and removals)."""
        if self._live is None:
            self._live = [node for _, node in sorted(self.nodes.items()) if not node.removed]
        return list(self._live)

    def _add_node(self, config: NodeConfig, pool: str) -> VirtualNode:
        node = VirtualNode(
            config, pool, self.loop, self.network, self.registries, joined=self.loop.now
        )
        self.nodes[config.name] = node
        self._nodes_changed()
        self.kubelets.attach(node)
        return node

    def _nodes_changed(self) -> None:
        self._live = None
        self.scheduler.nodes_changed()

    def _apply(self, event: NodeEvent) -> None:
        if event.action == "join":
            pool = self.scenario.pool(event.pool)
            added = []
            for _ in range(event.count):
                self._pool_size[pool.name] = self._pool_size.get(pool.name, 0) + 1
                new = self._add_node(pool.node(self._pool_size[pool.name]), pool.name)
                self.joined.append(new)
                added.append(new)
            for new in added:
                self.policy.node_added(new)
            self._retry_pending([n.name for n in added])
            return
        node = self.nodes.get(event.node)
        if node is None or node.removed:
            return
        if event.action == "remove":
            self._remove_node(node)
        elif event.action in ("cordon", "uncordon"):
            node.unschedulable = event.action == "cordon"
            self.scheduler.nodes_changed()
            self.policy.node_changed(node, "node changed")
            if not node.unschedulable:
                self._retry_pending([node.name])
        elif event.action in ("notready", "ready"):
            ready = event.action == "ready"
            if node.ready != ready:
                node.ready = ready
                self.scheduler.nodes_changed()
                if ready:
                    node.ready_since = self.loop.now
                self.policy.node_changed(node, "node ready" if ready else "node changed")
                if ready:
                    self._retry_pending([node.name])

    def _remove_node(self, node: VirtualNode) -> None:
        doomed = [p for p in self.workload if p.node == node.name and not p.ended]
        node.remove()
        self._nodes_changed()
        for pod in doomed:
            self.kubelets.delete(pod)
            spec = pod.spec
            if spec is not None and spec.owner_kind in REPLACED_KINDS:
                # Its controller makes a replacement, which the scheduler places elsewhere.
                replacement = replace(spec, at=self.loop.now, name=f"{spec.name}-r{self._uid}")
                self._create(replacement)
        self.policy.node_removed(node)

    # -- pods -------------------------------------------------------------------------
    def _create(self, spec: PodSpec) -> None:
        spec = self.policy.admit(spec)
        now = self.loop.now
        containers = [
            Container(
                image=image,
                policy=spec.policy_overrides.get(image)
                or spec.pull_policy
                or default_pull_policy(image),
            )
            for image in spec.images
        ]
        requests = {"cpu": spec.cpu, "memory": spec.memory, "pods": 1.0}
        if spec.gpus:
            requests[GPU_RESOURCE] = float(spec.gpus)
        pod = Pod(
            uid=self.new_uid(),
            namespace=spec.namespace,
            name=spec.name,
            role="workload",
            containers=containers,
            created=now,
            spec=spec,
            run_seconds=spec.duration,
            requests=requests,
        )
        for image in spec.images:
            self.first_seen.setdefault(image, now)
        self.workload.append(pod)
        self.policy.pod_created(pod)
        self._schedule(pod)

    def _schedule(self, pod: Pod) -> bool:
        node = self.scheduler.choose(pod)
        if node is None:
            if pod not in self.scheduler.pending:
                self.scheduler.pending.append(pod)
            return False
        self.scheduler.bind(pod, node)
        pod.bound_at = self.loop.now
        held = self.nodes[node]
        policy = self.policy
        pod.hints = {
            image: (policy.targeted(node, image), policy.left_out(node, image))
            for image in dict.fromkeys(pod.spec.images if pod.spec else ())
            if not held.has(image)
        }
        self.kubelets.start(pod)
        self.policy.pod_changed(pod)
        return True

    def _retry_pending(self, candidates: list[str]) -> None:
        pending = self.scheduler.pending
        if not pending:
            return
        for pod in list(pending):
            if pod.ended:
                pending.remove(pod)
            elif self.scheduler.fits_somewhere_new(pod, candidates):
                pending.remove(pod)
                if not self._schedule(pod):
                    pending.append(pod)

    def own_pod(
        self,
        node: str,
        role: PodRole,
        name: str,
        containers: list[Container],
        *,
        images: tuple[str, ...] = (),
        deadline: float | None = None,
        attempt: int = 0,
        namespace: str = "image-sync",
    ) -> Pod:
        """A policy's own pod, bound to `node` (nodeName set: no scheduler)."""
        pod = Pod(
            uid=self.new_uid(),
            namespace=namespace,
            name=name,
            role=role,
            containers=containers,
            created=self.loop.now,
            node=node,
            images=images,
            deadline=deadline,
            attempt=attempt,
            bound_at=self.loop.now,
        )
        self.kubelets.start(pod)
        return pod

    def delete_pod(self, pod: Pod) -> None:
        self.kubelets.delete(pod)

    def _pod_changed(self, pod: Pod) -> None:
        if pod.role == "workload" and pod.ended and pod.node:
            self.scheduler.release(pod)
            pod.requests = {}
            self._retry_pending([pod.node])
        self.policy.pod_changed(pod)

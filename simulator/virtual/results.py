"""What a virtual run measured: per pod, whether its images were there when it was bound and
what it waited; per run, the figures of the evaluation table and every miss by its cause.

Miss causes, first that applies:
- `pull failure`: the pod's own pull failed (registry outage, not found) at least once;
- `behind prefetch`: its pull waited more than a second in the node's queue behind a prefetch
  of another image;
- `first use`: no pod had used the image before (it could not have been learned);
- `budget`: the image had been on the node and image GC removed it, or the policy's disk
  budget left it out there;
- `known too late`: the policy was pulling it there (or had planned to) but had not finished;
- `not prefetched`: the policy did not try to put it there.

A pod counts as *known early* when the policy knew each of its images (learned from an
earlier pod, or declared) at least one pull time before the pod was bound: the image's
compressed size over the lower of its registry's and the node's bandwidth, plus the
registry's latency. Only a learning policy knows images; for the others no pod is.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from imagesync.reference import InvalidReference, parse_reference
from simulator.outcomes import HIT_WAIT_SECONDS, percentile
from simulator.virtual.node import PREFETCH, WORKLOAD
from simulator.virtual.pods import Pod

if TYPE_CHECKING:
    from simulator.virtual.cluster import VirtualCluster
    from simulator.virtual.node import VirtualNode

CAUSES = (
    "pull failure",
    "behind prefetch",
    "first use",
    "budget",
    "known too late",
    "not prefetched",
)


@dataclass(frozen=True, slots=True)
class PodResult:
    """One workload pod of a run (times in virtual seconds from the start)."""

    name: str
    node: str
    pool: str
    created: float
    bound_at: float | None
    running_at: float | None
    image_wait: float | None
    hit: bool
    cause: str  # "" for a hit or a pod never bound
    images: tuple[str, ...]
    known_early: bool = False  # its images known a pull time before it was bound


@dataclass
class RunResult:
    """Every pod's result and the run's totals."""

    scenario: str
    policy: str
    length: float
    pods: list[PodResult]
    bytes_by_registry: dict[str, dict[str, int]]
    disk_used: int
    stats: dict[str, float] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        bound = [p for p in self.pods if p.bound_at is not None]
        waits = [p.image_wait for p in bound if p.image_wait is not None]
        to_running = [
            (p.running_at if p.running_at is not None else self.length) - p.created
            for p in self.pods
        ]
        misses = Counter(p.cause for p in bound if not p.hit)
        known = [p for p in bound if p.known_early]
        workload = sum(v.get(WORKLOAD, 0) for v in self.bytes_by_registry.values())
        prefetch = sum(v.get(PREFETCH, 0) for v in self.bytes_by_registry.values())
        return {
            "scenario": self.scenario,
            "policy": self.policy,
            "pods_created": len(self.pods),
            "pods_bound": len(bound),
            "pods_started": sum(1 for p in self.pods if p.running_at is not None),
            "hit_rate": sum(1 for p in bound if p.hit) / len(bound) if bound else math.nan,
            "known_pods": len(known),
            "known_hit_rate": sum(1 for p in known if p.hit) / len(known) if known else math.nan,
            "wait_p50": percentile(waits, 50),
            "wait_p95": percentile(waits, 95),
            "wait_p99": percentile(waits, 99),
            "running_p50": percentile(to_running, 50),
            "running_p95": percentile(to_running, 95),
            "running_p99": percentile(to_running, 99),
            "bytes_workload": workload,
            "bytes_prefetch": prefetch,
            "bytes_pulled": workload + prefetch,
            "bytes_by_registry": self.bytes_by_registry,
            "disk_used": self.disk_used,
            "misses": {cause: misses.get(cause, 0) for cause in CAUSES},
            **self.stats,
        }


def miss_cause(cluster: VirtualCluster, pod: Pod) -> str:
    """Why a pod that was bound waited for its images (see the module docstring)."""
    regular = [c for c in pod.containers if not c.init]
    if any(c.failures for c in regular):
        return "pull failure"
    if any(c.behind_prefetch > HIT_WAIT_SECONDS for c in regular):
        return "behind prefetch"
    waited = [c for c in regular if c.wanted_at is not None and c.waited > HIT_WAIT_SECONDS]
    waited = waited or [c for c in regular if c.ready_at is None]
    if not waited:
        return "known too late"
    container = waited[0]
    image = container.image
    bound = pod.bound_at if pod.bound_at is not None else pod.created
    if cluster.first_seen.get(image, pod.created) >= pod.created:
        return "first use"
    node = cluster.nodes.get(pod.node)
    removed = node.gc_removed.get(image) if node is not None else None
    targeted, left_out = pod.hints.get(image, (False, False))
    if (removed is not None and removed <= bound) or left_out:
        return "budget"
    if container.joined_prefetch or targeted:
        return "known too late"
    return "not prefetched"


def pull_seconds(cluster: VirtualCluster, image: str, node: VirtualNode) -> float | None:
    """How long a pull of `image` to `node` takes with nothing else in flight; None when
    no registry serves it."""
    try:
        ref = parse_reference(image)
    except InvalidReference:
        return None
    registry = cluster.registries.registries.get(ref.domain)
    found = registry.find(ref) if registry is not None else None
    platform = found.platform(node.config.arch, node.config.os) if found is not None else None
    if registry is None or platform is None:
        return None
    rate = min(registry.bandwidth, node.config.bandwidth)
    return registry.latency + platform.compressed_size / rate


def known_early(cluster: VirtualCluster, pod: Pod, node: VirtualNode) -> bool:
    """The policy knew each of the pod's images at least one pull time before it was bound."""
    bound = pod.bound_at if pod.bound_at is not None else pod.created
    for image in dict.fromkeys(pod.spec.images if pod.spec is not None else ()):
        known = cluster.policy.known_at(image)
        took = pull_seconds(cluster, image, node)
        if known is None or took is None or known + took > bound:
            return False
    return True


def collect_result(cluster: VirtualCluster) -> RunResult:
    end = cluster.loop.now
    pods = []
    for pod in cluster.workload:
        if pod.deleted and pod.running_at is None:
            continue  # evicted with its node before it started: its replacement counts
        started = pod.running_at is not None
        bound = pod.bound_at is not None
        wait = pod.image_wait(end) if bound else None
        hit = bound and started and wait is not None and wait <= HIT_WAIT_SECONDS
        node = cluster.nodes.get(pod.node)
        pods.append(
            PodResult(
                name=pod.key,
                node=pod.node,
                pool=node.pool if node is not None else "",
                created=pod.created,
                bound_at=pod.bound_at,
                running_at=pod.running_at,
                image_wait=wait,
                hit=hit,
                cause="" if hit or not bound else miss_cause(cluster, pod),
                images=pod.spec.images if pod.spec is not None else (),
                known_early=bound and node is not None and known_early(cluster, pod, node),
            )
        )
    by_registry: dict[str, dict[str, int]] = {}
    for transfer in cluster.network.log:
        entry = by_registry.setdefault(transfer.host, {WORKLOAD: 0, PREFETCH: 0})
        entry[transfer.kind] += transfer.sent_by(end)
    disk = sum(node.disk_used() for node in cluster.live_nodes())
    return RunResult(
        scenario=cluster.scenario.name,
        policy=cluster.policy.name,
        length=cluster.length,
        pods=pods,
        bytes_by_registry=dict(sorted(by_registry.items())),
        disk_used=disk,
        stats=cluster.policy.stats(),
    )

"""Pods in virtual time: the workload's pods and the cache policies' own (pullers, keepers),
with the container states the kubelet reports and the planner reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from simulator.virtual.node import PullJob, Waiter

PodRole = Literal["workload", "puller", "keeper"]
ALWAYS, IF_NOT_PRESENT, NEVER = "Always", "IfNotPresent", "Never"


@dataclass(frozen=True, slots=True)
class PodSpec:
    """One workload pod as a trace or scenario gives it; images are normalized references."""

    at: float
    namespace: str
    name: str
    images: tuple[str, ...]
    owner_kind: str = ""
    owner: str = ""
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    gpus: int = 0
    cpu: float = 0.1  # cores
    memory: float = 128 * 2**20  # bytes
    duration: float | None = None  # seconds running; None: until the end
    pull_policy: str | None = None  # None: the API default (IfNotPresent for a tagged image)
    annotations: Mapping[str, str] = field(default_factory=dict)
    policy_overrides: Mapping[str, str] = field(default_factory=dict)  # image → admitted policy

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(eq=False)
class Container:
    """One container: its image, pull policy, state, and what waiting for its image cost."""

    image: str
    policy: str
    init: bool = False
    exits: bool = False  # runs and exits at once (a puller's containers)
    state: str = "waiting"  # waiting | running | terminated
    reason: str = "ContainerCreating"
    message: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    wanted_at: float | None = None  # when the kubelet first wanted its image
    ready_at: float | None = None
    failures: int = 0
    failure_kinds: set[str] = field(default_factory=set)
    backoff: float = 0.0
    behind_prefetch: float = 0.0  # seconds queued behind a prefetch of another image
    joined_prefetch: bool = False  # its pull joined a prefetch of the same image in flight
    job: PullJob | None = None
    waiter: Waiter | None = None
    image_id: str | None = None
    retrying: bool = False

    @property
    def waited(self) -> float:
        if self.wanted_at is None:
            return 0.0
        return (self.ready_at if self.ready_at is not None else self.wanted_at) - self.wanted_at


@dataclass(eq=False)
class Pod:
    """A pod on its way through the scheduler and a kubelet."""

    uid: str
    namespace: str
    name: str
    role: PodRole
    containers: list[Container]
    created: float
    spec: PodSpec | None = None
    node: str = ""
    images: tuple[str, ...] = ()  # puller: pull order; keeper: guarded images
    run_seconds: float | None = None
    deadline: float | None = None  # activeDeadlineSeconds
    attempt: int = 0
    bound_at: float | None = None
    running_at: float | None = None
    finished_at: float | None = None
    phase: str = "Pending"
    reason: str = ""
    message: str = ""
    deleted: bool = False
    next_container: int = 0
    version: int = 0
    requests: Mapping[str, float] = field(default_factory=dict)
    # At binding, per image not on the node: (the policy was after it, its budget left it out).
    hints: dict[str, tuple[bool, bool]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def ended(self) -> bool:
        return self.deleted or self.phase in ("Succeeded", "Failed")

    def image_wait(self, now: float) -> float:
        """Seconds its regular containers waited for images (so far, if still waiting)."""
        total = 0.0
        for container in self.containers:
            if container.init or container.wanted_at is None:
                continue
            end = container.ready_at if container.ready_at is not None else now
            total += end - container.wanted_at
        return total

    def starting(self) -> bool:
        """Bound and still starting, not stuck on a pull error: holds back prefetching on
        its node (`prefetcher.observe.starting_pod`)."""
        if self.role != "workload" or self.ended or not self.node or self.phase != "Pending":
            return False
        return all(
            c.reason in ("", "ContainerCreating", "PodInitializing")
            for c in self.containers
            if c.state == "waiting"
        )

"""What one measured replay produced: transfers, pods' image waits, joined nodes' warm-up."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from simulator.demo_harness import JSON, MANAGED_REGISTRIES
from simulator.outcomes import (
    Interval,
    PodOutcome,
    SchedulingLag,
    hit_rate,
    peak_concurrency,
    percentile,
    time_to_warm,
)

if TYPE_CHECKING:
    from simulator.registry import RegistrySet


@dataclass(frozen=True)
class Transfer:
    """One download from a registry (simulated seconds since the workload started)."""

    host: str
    start: float
    end: float
    size: int


def metered_registries(base: RegistrySet, clock: Any) -> RegistrySet:
    """The scenario's registries, recording every transfer: bytes and concurrency are
    registry-side figures, so they are measured where the simulated registry serves them."""
    from simulator.registry import RegistrySet as Base

    class Metered(Base):
        def __init__(self) -> None:
            super().__init__(base.registries.values(), epoch=base.epoch)
            self.transfers: list[tuple[str, float, float | None, int]] = []
            self._open: dict[str, list[int]] = {}
            self._last_size = 0

        def resolve(self, *args: Any, **kwargs: Any) -> Any:
            answer = super().resolve(*args, **kwargs)
            platform = getattr(answer, "platform", None)
            self._last_size = int(platform.compressed_size) if platform is not None else 0
            return answer

        def begin_transfer(self, host: str) -> None:
            super().begin_transfer(host)
            self.transfers.append((host, clock.now(), None, self._last_size))
            self._open.setdefault(host, []).append(len(self.transfers) - 1)

        def end_transfer(self, host: str) -> None:
            super().end_transfer(host)
            opened = self._open.get(host)
            if opened:
                index = opened.pop(0)
                host_, start, _, size = self.transfers[index]
                self.transfers[index] = (host_, start, clock.now(), size)

    return Metered()


@dataclass
class PodRecord:
    namespace: str
    name: str
    node: str = ""
    bound_at: float | None = None
    phase: str = "Pending"
    image_wait: float | None = None
    created_at: float | None = None  # the API server's creationTimestamp (simulated clock)
    unschedulable: bool = False  # the scheduler once found no room: its wait is legitimate


@dataclass
class JoinedNode:
    """A node that joined during the replay, and when each image it should hold arrived."""

    name: str
    pool: str
    joined_at: float
    wanted: list[str]
    arrivals: dict[str, float] = field(default_factory=dict)


@dataclass
class RunResult:
    """What one replay produced; times are simulated seconds since the workload started."""

    scenario: str
    policy: str
    speed: float
    length: float
    pods: list[PodOutcome]
    created: int
    transfers: list[Transfer]
    disk_used: int
    joined: list[JoinedNode]
    lag: SchedulingLag | None = None

    @property
    def started(self) -> int:
        return sum(1 for pod in self.pods if pod.started)

    @property
    def bytes_pulled(self) -> int:
        return sum(t.size for t in self.transfers)

    def waits(self) -> list[float]:
        return [pod.image_wait for pod in self.pods if pod.image_wait is not None]

    def details(self) -> JSON:
        """The figures plus every pod and transfer, for a closer look at one run."""
        return {
            **self.figures(),
            "pods": [
                {
                    "pod": pod.name,
                    "node": pod.node,
                    "bound_at": round(pod.bound_at, 1),
                    "image_wait": pod.image_wait,
                    "hit": pod.hit,
                }
                for pod in sorted(self.pods, key=lambda p: p.bound_at)
            ],
            "transfers": [
                [t.host, round(t.start, 1), round(t.end, 1), t.size] for t in self.transfers
            ],
        }

    def figures(self) -> JSON:
        """The headline numbers, for the summary, the evaluation table and tests."""
        waits = self.waits()
        warm = [
            time_to_warm(node.joined_at, node.arrivals.values(), len(node.wanted))
            for node in self.joined
        ]
        return {
            "scenario": self.scenario,
            "policy": self.policy,
            "pods_created": self.created,
            "sched_lag_p50": self.lag.p50 if self.lag else None,
            "sched_lag_p95": self.lag.p95 if self.lag else None,
            "sched_lag_bound": self.lag.bound if self.lag else None,
            "pods_bound": len(self.pods),
            "pods_started": self.started,
            "hit_rate": hit_rate(self.pods),
            "wait_p50": percentile(waits, 50),
            "wait_p95": percentile(waits, 95),
            "wait_p99": percentile(waits, 99),
            "bytes_pulled": self.bytes_pulled,
            "disk_used": self.disk_used,
            "peak_pulls": peak_concurrency(Interval(t.start, t.end) for t in self.transfers),
            "joined": [
                {
                    "node": node.name,
                    "wanted": len(node.wanted),
                    "present": len(node.arrivals),
                    "warm_seconds": seconds,
                }
                for node, seconds in zip(self.joined, warm, strict=True)
            ],
        }


def managed_prefixes() -> tuple[Any, ...]:
    from imagesync.matching import parse_prefix

    return tuple(parse_prefix(p) for p in MANAGED_REGISTRIES.split(","))


def is_managed_image(image: str, prefixes: Sequence[Any]) -> bool:
    from imagesync.matching import is_managed

    return is_managed(image, prefixes) is not None


def was_unschedulable(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(
        c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable" for c in conditions
    )


def normalize_image(image: str) -> str:
    from imagesync.reference import normalize

    return normalize(image)


def node_order(name: str) -> tuple[str, int]:
    prefix, _, number = name.rpartition("-")
    return (prefix, int(number)) if number.isdigit() else (name, 0)

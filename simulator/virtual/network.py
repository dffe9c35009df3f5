"""Registry bandwidth in virtual time: each registry's bandwidth shared max-min fairly among
the transfers in flight from it, each transfer also capped by its node's bandwidth.

Rates are recomputed whenever a transfer from that registry starts, ends or fails, and each
transfer's finish event is moved to match. Outages fail the transfers in flight when they
begin; a pull that starts during one fails at once (`RegistrySet.resolve` says so).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from simulator.registry import RegistrySet
from simulator.virtual.loop import EventLoop, Timer

# A transfer counts as done when fewer bytes than this are left (float rounding).
EPSILON_BYTES = 1.0


def max_min_fair(capacity: float, caps: Sequence[float]) -> list[float]:
    """Rates for flows sharing `capacity`, each at most its cap (water-filling): no flow can
    get more without taking from one that has less."""
    rates = [0.0] * len(caps)
    left = capacity
    remaining = len(caps)
    for index in sorted(range(len(caps)), key=lambda i: caps[i]):
        rate = min(caps[index], left / remaining)
        rates[index] = rate
        left -= rate
        remaining -= 1
    return rates


@dataclass(eq=False)
class Transfer:
    """One download from a registry; `on_end(ok)` is called once when it ends."""

    host: str
    node: str
    kind: str  # "workload" or "prefetch": who asked for the pull first
    size: int
    cap: float
    on_end: Callable[[bool], object]
    started: float
    remaining: float = 0.0
    rate: float = 0.0
    updated: float = 0.0
    timer: Timer | None = None
    ended: float | None = None
    ok: bool = False

    @property
    def sent(self) -> int:
        return int(self.size - max(0.0, self.remaining))


@dataclass
class Network:
    """The transfers in flight per registry host, and every transfer ever made."""

    loop: EventLoop
    registries: RegistrySet
    log: list[Transfer] = field(default_factory=list)
    _active: dict[str, list[Transfer]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for host, registry in sorted(self.registries.registries.items()):
            for start, _ in registry.outages:
                self.loop.at(start, lambda host=host: self._outage(host))  # type: ignore[misc]

    def start(
        self,
        host: str,
        node: str,
        kind: str,
        size: int,
        cap: float,
        on_end: Callable[[bool], object],
    ) -> Transfer:
        now = self.loop.now
        transfer = Transfer(host, node, kind, size, cap, on_end, now, float(size), updated=now)
        self.log.append(transfer)
        self._active.setdefault(host, []).append(transfer)
        self._reshare(host)
        return transfer

    def cancel(self, transfer: Transfer) -> None:
        """End a transfer without calling back (its node went away)."""
        self._end(transfer, ok=False, notify=False)

    def active(self, host: str) -> list[Transfer]:
        return list(self._active.get(host, ()))

    def _bandwidth(self, host: str) -> float:
        registry = self.registries.registries.get(host)
        return registry.bandwidth if registry is not None else 1e9

    def _reshare(self, host: str) -> None:
        now = self.loop.now
        flows = self._active.get(host, [])
        for flow in flows:
            flow.remaining -= flow.rate * (now - flow.updated)
            flow.updated = now
        rates = max_min_fair(self._bandwidth(host), [flow.cap for flow in flows])
        for flow, rate in zip(flows, rates, strict=True):
            if flow.timer is not None and rate == flow.rate:
                continue
            flow.rate = rate
            if flow.timer is not None:
                flow.timer.cancel()
            left = max(0.0, flow.remaining)
            delay = left / rate if rate > 0 else float("inf")
            flow.timer = self.loop.after(delay, lambda flow=flow: self._finish(flow))  # type: ignore[misc]

    def _finish(self, transfer: Transfer) -> None:
        transfer.remaining -= transfer.rate * (self.loop.now - transfer.updated)
        transfer.updated = self.loop.now
        if transfer.remaining > EPSILON_BYTES:  # a stale timer: the rate changed since
            return
        transfer.remaining = 0.0
        self._end(transfer, ok=True, notify=True)

    def _end(self, transfer: Transfer, *, ok: bool, notify: bool) -> None:
        flows = self._active.get(transfer.host, [])
        if transfer not in flows:
            return
        transfer.remaining -= transfer.rate * (self.loop.now - transfer.updated)
        transfer.updated = self.loop.now
        flows.remove(transfer)
        if transfer.timer is not None:
            transfer.timer.cancel()
        transfer.ended = self.loop.now
        transfer.ok = ok
        self._reshare(transfer.host)
        if notify:
            transfer.on_end(ok)

    def _outage(self, host: str) -> None:
        for transfer in list(self._active.get(host, ())):
            self._end(transfer, ok=False, notify=True)

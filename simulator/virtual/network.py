"""Registry bandwidth in virtual time: each registry's bandwidth shared max-min fairly among
the transfers in flight from it, each transfer also capped by its node's bandwidth.

Rates are recomputed whenever a transfer from that registry starts, ends or fails; one timer
per registry wakes the loop when its next transfer finishes. Outages fail the transfers in flight when they
begin; a pull that starts during one fails at once (`RegistrySet.resolve` says so).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter

from simulator.registry import RegistrySet
from simulator.virtual.loop import EventLoop, Timer

# A transfer counts as done when fewer bytes than this are left (float rounding).
EPSILON_BYTES = 1.0
_cap = attrgetter("cap")


def max_min_fair(capacity: float, caps: Sequence[float]) -> list[float]:
    """Rates for flows sharing `capacity`, each at most its cap (water-filling): no flow can
    get more without taking from one that has less."""
    rates = [0.0] * len(caps)
    left = capacity
    remaining = len(caps)
    for index in sorted(range(len(caps)), key=caps.__getitem__):
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
    ended: float | None = None
    ok: bool = False

    @property
    def sent(self) -> int:
        return int(self.size - max(0.0, self.remaining))

    def sent_by(self, moment: float) -> int:
        """Bytes sent by `moment` (a transfer still in flight counts what arrived)."""
        if self.ended is not None:
            return self.sent
        left = self.remaining - self.rate * (moment - self.updated)
        return int(self.size - max(0.0, left))


@dataclass
class Network:
    """The transfers in flight per registry host, and every transfer ever made."""

    loop: EventLoop
    registries: RegistrySet
    log: list[Transfer] = field(default_factory=list)
    _active: dict[str, list[Transfer]] = field(default_factory=dict)
    _timers: dict[str, Timer] = field(default_factory=dict)

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

    def set_caps(self, transfers: Sequence[Transfer], cap: float) -> None:
        """New per-transfer caps (a node's bandwidth split among its pulls), rates reshared."""
        hosts = []
        for transfer in transfers:
            if transfer.ended is None and transfer.cap != cap:
                hosts.append(transfer.host)
                self._advance(transfer.host)
                transfer.cap = cap
        for host in dict.fromkeys(hosts):
            self._reshare(host)

    def active(self, host: str) -> list[Transfer]:
        return list(self._active.get(host, ()))

    def _bandwidth(self, host: str) -> float:
        registry = self.registries.registries.get(host)
        return registry.bandwidth if registry is not None else 1e9

    def _advance(self, host: str) -> list[Transfer]:
        """Bring every transfer from `host` up to now; those left in flight."""
        now = self.loop.now
        flows = self._active.get(host, [])
        for flow in flows:
            if flow.updated != now:
                flow.remaining -= flow.rate * (now - flow.updated)
                flow.updated = now
        return flows

    def _reshare(self, host: str) -> None:
        """New rates for `host`'s transfers (brought up to now at their old rates), as
        `max_min_fair` gives them, and one timer for the next to finish."""
        timer = self._timers.pop(host, None)
        if timer is not None:
            timer.cancel()
        flows = self._active.get(host)
        if not flows:
            return
        now = self.loop.now
        left = self._bandwidth(host)
        remaining = len(flows)
        soonest = float("inf")
        # min() and max() written out: this loop is most of a copy-everything run's network.
        for flow in sorted(flows, key=_cap):  # (stable: the order max_min_fair fills them)
            if flow.updated != now:
                flow.remaining -= flow.rate * (now - flow.updated)
                flow.updated = now
            share = left / remaining
            rate = share if share < flow.cap else flow.cap  # min(cap, share)
            flow.rate = rate
            left -= rate
            remaining -= 1
            if rate > 0:
                bytes_left = flow.remaining
                seconds = (bytes_left if bytes_left > 0.0 else 0.0) / rate
                if seconds < soonest:
                    soonest = seconds
        if soonest < float("inf"):
            self._timers[host] = self.loop.after(soonest, lambda: self._tick(host))

    def _tick(self, host: str) -> None:
        self._timers.pop(host, None)
        finished = [flow for flow in self._advance(host) if flow.remaining <= EPSILON_BYTES]
        for flow in finished:
            flow.remaining = 0.0
            self._end(flow, ok=True, notify=True)
        if not finished:
            self._reshare(host)

    def _end(self, transfer: Transfer, *, ok: bool, notify: bool) -> None:
        flows = self._active.get(transfer.host, [])
        if transfer not in flows:
            return
        now = self.loop.now
        if transfer.updated != now:  # (the others are brought up to now by the reshare)
            transfer.remaining -= transfer.rate * (now - transfer.updated)
            transfer.updated = now
        flows.remove(transfer)
        transfer.ended = self.loop.now
        transfer.ok = ok
        self._reshare(transfer.host)
        if notify:
            transfer.on_end(ok)

    def _outage(self, host: str) -> None:
        for transfer in list(self._active.get(host, ())):
            self._end(transfer, ok=False, notify=True)

"""Leader election on a coordination.k8s.io/v1 Lease, so two replicas never act at once.

The algorithm is client-go's: read the Lease; a candidate takes it over only when its record
has not changed for `leaseDurationSeconds` *as observed on the candidate's own clock* (so
clocks need not agree); every write carries the resourceVersion it read, so of two
candidates exactly one wins (the other gets 409). The holder renews every `retry_period`
and stops acting when it could not renew for `renew_deadline`, which is shorter than the
lease, so it has stopped before anyone else can take over.

`leading()` is what the controller asks before every write, and it holds only while the last
renewal is younger than `renew_deadline` on a monotonic clock: a Lease call that hangs cannot
stretch the leadership (each call is also bounded, so the elector thread comes back to renew
or step down), and a Lease that shows another holder ends it at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from imagesync.kubeclient import KubeError
from prefetcher.informer import Clock
from prefetcher.kube import Kube

log = logging.getLogger(__name__)

LEASE_NAME = "image-sync-prefetcher"


@dataclass(frozen=True)
class LeaseSettings:
    """Timings as client-go names them; renew_deadline < lease_duration."""

    name: str = LEASE_NAME
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    @property
    def call_timeout(self) -> float:
        """Bound of one Lease call: a round (a read and a write) fits in the time left
        between a renewal that is due and the renew deadline."""
        return max(0.1, (self.renew_deadline - self.retry_period) / 2)


def micro_time(moment: float) -> str:
    """A Kubernetes MicroTime: RFC 3339 with microseconds, in UTC."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Holds or waits for the Lease; `is_leader` is set only while the lease is ours."""

    def __init__(
        self,
        kube: Kube,
        identity: str,
        *,
        clock: Clock,
        settings: LeaseSettings | None = None,
        on_change: Callable[[bool], None] | None = None,
        on_error: Callable[[str, KubeError], None] | None = None,
    ) -> None:
        self._kube = kube
        self.namespace = kube.namespace
        self.identity = identity
        self._clock = clock
        self.settings = settings or LeaseSettings()
        self._on_change = on_change
        self._on_error = on_error
        self.is_leader = threading.Event()
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0  # monotonic
        self._renewed_at = 0.0  # monotonic
        self.holder = ""
        # False makes a stop look like a crash (tests): the lease is left to expire.
        self.release_on_stop = True

    def leading(self) -> bool:
        """True while we hold the lease and renewed it less than `renew_deadline` ago."""
        return (
            self.is_leader.is_set()
            and self._clock.monotonic() - self._renewed_at < self.settings.renew_deadline
        )

    def run(self, stop: threading.Event) -> None:
        """Try to acquire, then renew, until `stop`; release the lease on the way out."""
        while not stop.is_set():
            started = self._clock.monotonic()
            ok = self.try_acquire_or_renew()
            now = self._clock.monotonic()
            if ok:
                # The renewal counts from when the round began: the write may have landed then.
                self._renewed_at = started
                self._set_leader(True)
            elif self.is_leader.is_set() and (
                self.holder not in ("", self.identity)
                or now - self._renewed_at >= self.settings.renew_deadline
            ):
                log.error(
                    "lost the lease (holder %r, last renewal %.1fs ago); stepping down",
                    self.holder,
                    now - self._renewed_at,
                    extra={"identity": self.identity, "lease": self.settings.name},
                )
                self._set_leader(False)
            self._clock.wait(stop, self.settings.retry_period)
        if self.is_leader.is_set():
            if self.release_on_stop:
                self.release()
            self._set_leader(False)

    def _set_leader(self, leading: bool) -> None:
        if leading == self.is_leader.is_set():
            return
        if leading:
            log.info(
                "%s is now the leader (lease %s/%s)",
                self.identity,
                self.namespace,
                self.settings.name,
                extra={"identity": self.identity, "lease": self.settings.name},
            )
            self.is_leader.set()
        else:
            log.info("%s is no longer the leader", self.identity, extra={"identity": self.identity})
            self.is_leader.clear()
        if self._on_change is not None:
            self._on_change(leading)

    def try_acquire_or_renew(self) -> bool:
        """One round of the algorithm; True when we hold the lease afterwards."""
        now = self._clock.now()
        observed_now = self._clock.monotonic()
        try:
            lease = self._read()
        except KubeError as exc:
            self._error("get", exc)
            return False
        if lease is None:
            return self._write("create", self._record(None, now))
        spec = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        self.holder = holder
        observed = (
            holder,
            spec.get("renewTime"),
            spec.get("leaseDurationSeconds"),
            spec.get("leaseTransitions"),
        )
        if observed != self._observed:
            self._observed, self._observed_at = observed, observed_now
        duration = float(spec.get("leaseDurationSeconds") or self.settings.lease_duration)
        if holder and holder != self.identity and observed_now < self._observed_at + duration:
            return False
        return self._write("replace", self._record(lease, now))

    def _record(self, lease: dict[str, Any] | None, now: float) -> dict[str, Any]:
        spec = dict((lease or {}).get("spec") or {})
        ours = spec.get("holderIdentity") == self.identity
        if not ours:
            spec["acquireTime"] = micro_time(now)
            if lease is not None:
                spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        spec.setdefault("leaseTransitions", 0)
        spec["holderIdentity"] = self.identity
        spec["leaseDurationSeconds"] = int(self.settings.lease_duration)
        spec["renewTime"] = micro_time(now)
        metadata: dict[str, Any] = {"name": self.settings.name, "namespace": self.namespace}
        if lease is not None:
            metadata["resourceVersion"] = lease["metadata"]["resourceVersion"]
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": spec,
        }

    def release(self) -> None:
        """On a clean shutdown, hand the lease back so the other replica need not wait it out."""
        try:
            lease = self._read()
        except KubeError as exc:
            self._error("get", exc)
            return
        if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
            return
        body = self._record(lease, self._clock.now())
        body["spec"]["holderIdentity"] = ""
        body["spec"]["leaseDurationSeconds"] = 1
        self._write("replace", body)

    def _read(self) -> dict[str, Any] | None:
        return self._kube.read_lease(self.settings.name, timeout=self.settings.call_timeout)

    def _write(self, verb: str, body: dict[str, Any]) -> bool:
        try:
            written = self._kube.write_lease(
                body, create=verb == "create", timeout=self.settings.call_timeout
            )
        except KubeError as exc:
            self._error(verb, exc)
            return False
        if written:
            self.holder = str(body["spec"]["holderIdentity"])
        return written

    def _error(self, verb: str, exc: KubeError) -> None:
        log.warning("leader election: %s", exc)
        if self._on_error is not None:
            self._on_error(verb, exc)

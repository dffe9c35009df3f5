"""One node's image side in virtual time: its disk with the kubelet's image GC, and its pull
queue (serializeImagePulls: one pull at a time, first come first served; with it off, up to
`maxParallelImagePulls` at once, sharing the node's bandwidth).

A pull of an image already queued or in flight joins it (as the kubelet shares one pull per
reference). A workload pull queued behind a prefetch waits for it: an image pull in flight is
never pre-empted, and deleting the pod that asked for it does not stop it, as with a real
kubelet, unless the node's `cancel_pull_on_delete` says the kubelet cancels (the queue and
the registry are freed at once; the bytes fetched are lost). Disk and GC are the simulator's own `ImageStore` (high 85 %, low 80 %,
oldest-used first, running containers' images never removed).
"""

from __future__ import annotations

import functools
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from imagesync.reference import InvalidReference, parse_reference
from simulator.imagestore import ImageStore
from simulator.nodes import NodeConfig
from simulator.registry import PullError, PullErrorKind, RegistrySet, Resolved
from simulator.virtual.loop import EventLoop
from simulator.virtual.network import Network, Transfer

WORKLOAD, PREFETCH = "workload", "prefetch"


@dataclass(frozen=True, slots=True)
class PullResult:
    """How one pull ended, as the waiting containers see it."""

    ok: bool
    reason: str = ""  # ErrImagePull on failure
    message: str = ""  # containerd's error text
    kind: str = ""  # PullErrorKind value on failure


Waiter = Callable[[PullResult], object]


@dataclass(eq=False)
class PullJob:
    """One pull in the node's queue; every container waiting for the reference is a waiter."""

    reference: str
    always: bool
    kind: str
    queued: float
    waiters: list[Waiter] = field(default_factory=list)
    behind_prefetch: bool = False  # queued while a prefetch of another image was ahead
    started: float | None = None
    transfer: Transfer | None = None
    cancelled: bool = False


@dataclass(eq=False)
class VirtualNode:
    """A node: labels, taints, resources, disk, pull queue; pods live in the kubelet."""

    config: NodeConfig
    pool: str
    loop: EventLoop
    network: Network
    registries: RegistrySet
    joined: float
    store: ImageStore = field(init=False)
    labels: dict[str, str] = field(init=False)
    taints: tuple[dict[str, str], ...] = field(init=False)
    ready: bool = True
    ready_since: float = 0.0
    unschedulable: bool = False
    removed: bool = False
    queue: deque[PullJob] = field(default_factory=deque)
    active: list[PullJob] = field(default_factory=list)  # in flight, at most `parallel`
    parallel: int = field(init=False)  # pulls the kubelet runs at once
    running_images: Counter[str] = field(default_factory=Counter)  # image id → running containers
    exited_images: Counter[str] = field(default_factory=Counter)
    gc_removed: dict[str, float] = field(default_factory=dict)  # reference → first GC removal
    on_image_added: list[Callable[[str], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        config = self.config
        self.store = ImageStore(config.disk, system_bytes=config.system_disk_used, policy=config.gc)
        self.labels = config.all_labels()
        self.taints = tuple(dict(t) for t in config.taints)
        self.ready_since = self.joined
        self.unschedulable = config.unschedulable
        for reference in config.preloaded_images:
            resolved = self.registries.resolve(reference, config.arch, self.joined, config.os)
            if isinstance(resolved, Resolved):
                self.store.add(resolved, self.joined - config.gc.min_age)
        self.parallel = config.parallel_pulls()
        self.loop.at(self.joined + config.gc.period, self._periodic_gc)

    @property
    def name(self) -> str:
        return self.config.name

    # -- what is on disk --------------------------------------------------------------
    def has(self, reference: str) -> bool:
        return self.store.find(reference) is not None

    def image_id(self, reference: str) -> str | None:
        stored = self.store.find(reference)
        return stored.image_id if stored is not None else None

    def pulling(self, reference: str) -> bool:
        """True while a pull of `reference` is queued or in flight here."""
        return any(job.reference == reference for job in [*self.active, *self.queue])

    def top_images(self, limit: int = 50) -> dict[str, int]:
        """`node.status.images` as the scheduler and the prefetcher read it: the `limit`
        largest images, by tag name, with their size."""
        ordered = sorted(self.store.images.values(), key=lambda i: (-i.size, i.image_id))
        return {
            name: image.size for image in ordered[:limit] for name in image.names if "@" not in name
        }

    def disk_used(self) -> int:
        return self.store.used - self.store.system_bytes

    # -- pulls ------------------------------------------------------------------------
    def pull(self, reference: str, always: bool, kind: str, waiter: Waiter) -> PullJob:
        """Queue a pull of `reference` (or join the one queued or in flight)."""
        ahead = [*self.active, *self.queue]
        for job in ahead:
            if job.reference == reference and (job.always or not always):
                job.waiters.append(waiter)
                return job
        job = PullJob(reference, always, kind, self.loop.now, [waiter])
        job.behind_prefetch = kind == WORKLOAD and any(j.kind == PREFETCH for j in ahead)
        self.queue.append(job)
        self._next()
        return job

    def withdraw(self, job: PullJob, waiter: Waiter) -> None:
        """A waiter leaves (its pod was deleted); a queued job nobody waits for is dropped,
        one in flight runs on unless the kubelet cancels pulls on deletion."""
        if waiter in job.waiters:
            job.waiters.remove(waiter)
        if job.waiters:
            return
        if job in self.queue:
            self.queue.remove(job)
        elif job in self.active and self.config.cancel_pull_on_delete:
            job.cancelled = True
            if job.transfer is not None:
                self.network.cancel(job.transfer)
            self.active.remove(job)
            self._share_link()
            self._next()

    def _next(self) -> None:
        while len(self.active) < self.parallel and self.queue and not self.removed:
            job = self.queue.popleft()
            if not job.waiters:
                continue
            self.active.append(job)
            job.started = self.loop.now
            self._start(job)

    def _share_link(self) -> None:
        """Parallel pulls split the node's bandwidth equally (serialized ones have it all)."""
        if self.parallel == 1:
            return
        flows = [j.transfer for j in self.active if j.transfer is not None and not j.cancelled]
        if flows:
            self.network.set_caps(flows, self.config.bandwidth / len(flows))

    def _start(self, job: PullJob) -> None:
        config = self.config
        now = self.loop.now
        resolved = self.registries.resolve(job.reference, config.arch, now, config.os)
        if isinstance(resolved, PullError):
            self._done(
                job, PullResult(False, "ErrImagePull", resolved.message, resolved.kind.value)
            )
            return
        registry = self.registries.registries.get(registry_host(resolved.reference))
        latency = registry.latency if registry is not None else 0.3
        if self.store.find(resolved.image_id) is not None:
            # `Always` on a present image: a manifest check, no layers.
            self.loop.after(latency, lambda: self._stored(job, resolved))
            return
        size = resolved.platform.disk_size
        if not self.store.fits(size):
            self.collect(need=size)
        if not self.store.fits(size):
            message = (
                f'failed to pull and unpack image "{resolved.reference}": no space left on device'
            )
            self._done(
                job, PullResult(False, "ErrImagePull", message, PullErrorKind.NO_SPACE.value)
            )
            return
        self.loop.after(latency, lambda: self._transfer(job, resolved))

    def _transfer(self, job: PullJob, resolved: Resolved) -> None:
        if self.removed or job.cancelled:
            return
        host = registry_host(resolved.reference)
        if self.registries.is_down(host, self.loop.now):
            error = self.registries.unavailable_error(resolved.reference)
            self._done(job, PullResult(False, "ErrImagePull", error.message, error.kind.value))
            return

        def ended(ok: bool) -> None:
            if ok:
                self._stored(job, resolved)
            else:
                error = self.registries.unavailable_error(resolved.reference)
                self._done(job, PullResult(False, "ErrImagePull", error.message, error.kind.value))

        size = resolved.platform.compressed_size
        job.transfer = self.network.start(
            host, self.name, job.kind, size, self.config.bandwidth, ended
        )
        self._share_link()

    def _stored(self, job: PullJob, resolved: Resolved) -> None:
        if self.removed or job.cancelled:
            return
        size = resolved.platform.disk_size
        if not self.store.fits(size):
            self.collect(need=size)
        self.store.add(resolved, self.loop.now)
        self._done(job, PullResult(True))
        for hook in list(self.on_image_added):
            hook(resolved.reference)

    def _done(self, job: PullJob, result: PullResult) -> None:
        if job in self.active:
            self.active.remove(job)
            if job.transfer is not None:
                self._share_link()
        for waiter in list(job.waiters):
            waiter(result)
        self._next()

    # -- image GC ---------------------------------------------------------------------
    def collect(self, need: int = 0) -> None:
        store = self.store
        running = {i for i, n in self.running_images.items() if n > 0}
        exited = {i for i, n in self.exited_images.items() if n > 0}
        may_remove = (
            store.policy.max_age is not None
            or store.over_high_threshold()
            or (need > 0 and not store.fits(need))
        )
        if not may_remove:
            store.touch(running | exited, self.loop.now)
            store.last_gc = self.loop.now
            return
        names = {image_id: set(image.names) for image_id, image in store.images.items()}
        report = store.collect(self.loop.now, running, exited, need_bytes=need)
        for image_id in report.removed:
            for name in names.get(image_id, ()):
                if "@" not in name:
                    self.gc_removed.setdefault(name, self.loop.now)

    def _periodic_gc(self) -> None:
        if self.removed:
            return
        self.collect()
        self.loop.after(self.config.gc.period, self._periodic_gc)

    def remove(self) -> None:
        """The node leaves: its pulls end, nothing calls back."""
        self.removed = True
        self.ready = False
        for job in self.active:
            if job.transfer is not None:
                self.network.cancel(job.transfer)
        self.active.clear()
        self.queue.clear()


@functools.lru_cache(maxsize=4096)
def registry_host(reference: str) -> str:
    """The registry host of a reference; empty when it does not parse."""
    try:
        return parse_reference(reference).domain
    except InvalidReference:
        return ""

"""A node's image store and the kubelet's image garbage collector over it.

This is where image-sync's problem lives: the kubelet deletes images no container uses once
the disk passes the high threshold (default 85 %), oldest-used first, down to the low
threshold (80 %), sparing images younger than the minimum age (2 min); with
`imageMaximumGCAge` it also deletes images unused for that long. A running container's image
is never collected; an exited container's image only until container GC removes that
container, which happens first under disk pressure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from simulator.registry import Resolved


@dataclass(frozen=True, slots=True)
class GCPolicy:
    """The kubelet's image GC settings (KubeletConfiguration names in the comments)."""

    high_threshold: float = 85.0  # imageGCHighThresholdPercent
    low_threshold: float = 80.0  # imageGCLowThresholdPercent
    min_age: float = 120.0  # imageMinimumGCAge
    period: float = 300.0  # ImageGCPeriod (not configurable in the real kubelet)
    max_age: float | None = None  # imageMaximumGCAge; None disables it
    pressure_available: float = 15.0  # evictionHard imagefs.available<15%


@dataclass(slots=True)
class StoredImage:
    """An image on the node's disk, keyed by its repo digest like `status.images`."""

    image_id: str
    names: set[str]
    size: int
    first_detected: float
    last_used: float
    pinned: bool = False
    # KEP-2535: the pull secrets (namespace, name) the image was pulled with, and whether
    # every pod on the node may use it (preloaded, or pulled without credentials).
    pulled_with: set[tuple[str, str]] = field(default_factory=set)
    node_accessible: bool = False

    def sorted_names(self) -> list[str]:
        """Digest name first, then tags: the order the kubelet reports."""
        return sorted(self.names, key=lambda n: ("@" not in n, n))


@dataclass(slots=True)
class GCReport:
    """What one GC pass did, for events and tests."""

    at: float
    usage_before: float
    usage_after: float
    removed: list[str] = field(default_factory=list)
    freed: int = 0
    exited_containers_removed: bool = False
    shortfall: int = 0

    @property
    def message(self) -> str:
        """The kubelet's FreeDiskSpaceFailed text when GC could not free enough."""
        if not self.shortfall:
            return ""
        return (
            "Failed to garbage collect required amount of images. Attempted to free "
            f"{self.freed + self.shortfall} bytes, but only found {self.freed} bytes eligible to free."
        )


class ImageStore:
    """The images on one node, its disk capacity, and the GC that keeps it under the thresholds."""

    def __init__(
        self, capacity: int, *, system_bytes: int = 0, policy: GCPolicy | None = None
    ) -> None:
        if capacity <= 0:
            raise ValueError("disk capacity must be positive")
        self.capacity = capacity
        self.system_bytes = system_bytes
        self.policy = policy or GCPolicy()
        self.images: dict[str, StoredImage] = {}
        self._image_bytes = 0  # the sum of the sizes of `images`, kept as they come and go
        self._by_name: dict[str, str] = {}
        self.reports: list[GCReport] = []
        self.last_gc: float | None = None
        self.version = 0  # counts changes to `images` and their names (readers cache by it)

    # -- what is there -----------------------------------------------------------------
    @property
    def used(self) -> int:
        return self.system_bytes + self._image_bytes

    @property
    def available(self) -> int:
        return max(0, self.capacity - self.used)

    def usage_percent(self) -> float:
        return 100.0 * (self.capacity - self.available) / self.capacity

    def disk_pressure(self) -> bool:
        """True when free space is under the eviction threshold (DiskPressure condition)."""
        return 100.0 * self.available / self.capacity < self.policy.pressure_available

    def find(self, reference: str) -> StoredImage | None:
        """The image stored under `reference` (normalized `repo:tag` or `repo@digest`)."""
        image_id = self._by_name.get(reference)
        return self.images.get(image_id) if image_id else None

    def has(self, reference: str) -> bool:
        return self.find(reference) is not None

    def references(self) -> set[str]:
        """Every name the store answers to."""
        return set(self._by_name)

    # -- changes ---------------------------------------------------------------------
    def fits(self, size: int) -> bool:
        return size <= self.available

    def add(self, resolved: Resolved, now: float) -> StoredImage:
        """Store a pulled image (or add a tag to an image already there)."""
        self.version += 1
        image_id = resolved.image_id
        stored = self.images.get(image_id)
        if stored is None:
            stored = StoredImage(
                image_id=image_id,
                names={image_id},
                size=resolved.platform.disk_size,
                first_detected=now,
                last_used=now,
            )
            self.images[image_id] = stored
            self._image_bytes += stored.size
            self._by_name[image_id] = image_id
        # A tag moves to the newest image that carries it.
        for name in (resolved.reference, resolved.image.reference):
            old = self._by_name.get(name)
            if old and old != image_id and old in self.images:
                self.images[old].names.discard(name)
            stored.names.add(name)
            self._by_name[name] = image_id
        return stored

    def remove(self, image_id: str) -> StoredImage | None:
        stored = self.images.pop(image_id, None)
        if stored is not None:
            self.version += 1
            self._image_bytes -= stored.size
            for name in stored.names:
                if self._by_name.get(name) == image_id:
                    del self._by_name[name]
        return stored

    def touch(self, image_ids: Iterable[str], now: float) -> None:
        """Mark images as used now (the GC's detection of images in use)."""
        for image_id in image_ids:
            stored = self.images.get(image_id)
            if stored is not None:
                stored.last_used = now

    # -- garbage collection ----------------------------------------------------------
    def gc_due(self, now: float) -> bool:
        return self.last_gc is None or now - self.last_gc >= self.policy.period

    def over_high_threshold(self, extra: int = 0) -> bool:
        used = self.capacity - self.available + extra
        return 100.0 * used / self.capacity >= self.policy.high_threshold

    def collect(
        self,
        now: float,
        running: set[str],
        exited: set[str],
        *,
        need_bytes: int = 0,
    ) -> GCReport:
        """One GC pass. `running`/`exited`: image ids of running / exited containers.

        Past the high threshold (or when `need_bytes` does not fit) container GC goes first,
        so exited containers stop protecting their images (`exited_containers_removed`).
        """
        self.last_gc = now
        report = GCReport(at=now, usage_before=self.usage_percent(), usage_after=0.0)
        policy = self.policy
        over = self.over_high_threshold() or (need_bytes > 0 and not self.fits(need_bytes))
        in_use = set(running) if over else set(running) | set(exited)
        report.exited_containers_removed = over and bool(set(exited) - set(running))
        self.touch(in_use, now)

        def eligible(image: StoredImage) -> bool:
            return (
                image.image_id not in in_use
                and not image.pinned
                and now - image.first_detected >= policy.min_age
            )

        if policy.max_age is not None:
            for image in list(self.images.values()):
                if eligible(image) and now - image.last_used > policy.max_age:
                    self.remove(image.image_id)
                    report.removed.append(image.image_id)
                    report.freed += image.size

        if over:
            target_available = self.capacity * (100.0 - policy.low_threshold) / 100.0
            to_free = int(max(target_available - self.available, need_bytes - self.available, 0))
            freed = 0
            candidates = sorted(
                (i for i in self.images.values() if eligible(i)),
                key=lambda i: (i.last_used, i.first_detected, i.image_id),
            )
            for image in candidates:
                if freed >= to_free:
                    break
                self.remove(image.image_id)
                report.removed.append(image.image_id)
                freed += image.size
            report.freed += freed
            report.shortfall = max(0, to_free - freed)
        report.usage_after = self.usage_percent()
        self.reports.append(report)
        del self.reports[:-100]
        return report

    # -- what the node reports -------------------------------------------------------
    def node_status_images(self, limit: int = 50) -> list[dict[str, object]]:
        """`node.status.images`: largest first, at most `limit` (nodeStatusMaxImages), 5 names each."""
        ordered = sorted(self.images.values(), key=lambda i: (-i.size, i.image_id))
        return [
            {"names": image.sorted_names()[:5], "sizeBytes": image.size}
            for image in ordered[:limit]
        ]

"""What the learner holds for one image between flushes: its uses, profiles, and writes in doubt."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from imagesync.cachedimage import MAX_PROFILES, PlacementProfile, merge_profiles

# Profiles one buffered image holds between flushes; merge_profiles keeps MAX_PROFILES of them.
MAX_PENDING_PROFILES = 4 * MAX_PROFILES


@dataclass
class PendingImage:
    """Usage of one image not yet written: profiles by identity, uses per day, last seen.

    A profile is held as the sighting brought it, with when it was last seen beside it:
    stamping a copy with `lastSeen` waits for the flush, off the request path.
    """

    # identity → (profile, last seen, bytes of its JSON)
    profiles: dict[bytes, tuple[PlacementProfile, str, int]] = field(default_factory=dict)
    daily: dict[str, int] = field(default_factory=dict)
    count: int = 0
    last_seen: str = ""

    def add(
        self, key: bytes, profile: PlacementProfile | None, size: int, day: str, seen: str
    ) -> bool:
        """Count one use; keep the profile (if any) unless this image holds too many already.

        True when `profile` was stored as a new entry (the caller accounts for its bytes)."""
        profiles = self.profiles
        added = False
        if profile is not None:
            if key in profiles:
                profiles[key] = (profile, seen, profiles[key][2])
            elif len(profiles) < MAX_PENDING_PROFILES:
                profiles[key] = (profile, seen, size)
                added = True
        daily = self.daily
        daily[day] = daily.get(day, 0) + 1
        self.count += 1
        if seen > self.last_seen:
            self.last_seen = seen
        return added

    @property
    def size(self) -> int:
        """Bytes of profile JSON this entry accounts for."""
        return sum(entry[2] for entry in self.profiles.values())

    def absorb(self, other: PendingImage) -> None:
        for key, (profile, seen, size) in other.profiles.items():
            mine = self.profiles.get(key)
            if mine is None and len(self.profiles) >= MAX_PENDING_PROFILES:
                continue
            if mine is None or seen > mine[1]:
                self.profiles[key] = (profile, seen, size)
        for day, uses in other.daily.items():
            self.daily[day] = self.daily.get(day, 0) + uses
        self.count += other.count
        self.last_seen = max(self.last_seen, other.last_seen)

    def profile_list(self) -> list[PlacementProfile]:
        stamped: list[PlacementProfile] = []
        for profile, seen, _ in self.profiles.values():
            with_time = profile.copy()
            with_time["lastSeen"] = seen
            stamped.append(with_time)
        return merge_profiles([], stamped)


class InDoubt(NamedTuple):
    """Uses sent in a write whose answer was lost: they landed if the writer's stamp on the
    object reached `sequence`."""

    sequence: int
    entry: PendingImage

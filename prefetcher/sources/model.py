"""What a source says is wanted, as typed data the reconciler turns into CachedImage writes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from imagesync.cachedimage import PlacementProfile


@dataclass(frozen=True)
class SourcedImage:
    """One image a source wants now, where it wants it, and what the source knows of it."""

    image: str  # normalized reference
    source: str  # Observed or Catalog
    profiles: tuple[PlacementProfile, ...] = ()  # () = every eligible node
    status: Mapping[str, Any] = field(default_factory=dict)  # e.g. digest, compressedSize


@dataclass(frozen=True)
class SourceProblem:
    """A source that could not be read for one prefix, as the report, metric and log show it."""

    prefix: str
    source: str
    kind: str  # unauthorized, not-found, rate-limited, unreachable, tls, invalid, error
    message: str

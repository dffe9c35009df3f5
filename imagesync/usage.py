"""Usage counts on a CachedImage's status, added exactly once by every writer.

Every worker of every webhook replica adds uses to the same `status`. A count is added to what is stored, never overwritten, and each writer
stamps its write with its own increasing sequence number in `status.learnerWrites`, in the
same replace as the counts. A write whose answer was lost (a timeout, a 5xx) may or may
not have landed: the writer reads its stamp back and resends only what did not land, so a
use is never counted twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from imagesync.cachedimage import format_time, merge_daily_uses

LEARNER_WRITES = "learnerWrites"
# Stamps of writers not heard from for this long are dropped (their process is gone).
WRITER_STAMP_TTL = timedelta(days=1)
MAX_WRITER_STAMPS = 64


def applied_sequence(status: Mapping[str, Any], writer: str) -> int:
    """The last sequence number `writer` stamped on this status (0: none)."""
    stamps = status.get(LEARNER_WRITES)
    stamp = stamps.get(writer) if isinstance(stamps, Mapping) else None
    sequence = stamp.get("sequence") if isinstance(stamp, Mapping) else None
    return sequence if isinstance(sequence, int) and not isinstance(sequence, bool) else 0


def _stamps(status: Mapping[str, Any], writer: str, sequence: int, now: datetime) -> dict[str, Any]:
    """`learnerWrites` with `writer` at `sequence`; stale stamps dropped, the newest kept."""
    cutoff = format_time(now - WRITER_STAMP_TTL)
    stored = status.get(LEARNER_WRITES)
    kept = {
        str(name): dict(stamp)
        for name, stamp in (stored.items() if isinstance(stored, Mapping) else ())
        if isinstance(stamp, Mapping) and str(stamp.get("at") or "") >= cutoff and name != writer
    }
    newest = sorted(kept.items(), key=lambda item: str(item[1].get("at")), reverse=True)
    out = dict(newest[: MAX_WRITER_STAMPS - 1])
    out[writer] = {"sequence": sequence, "at": format_time(now)}
    return out


def add_usage(
    status: Mapping[str, Any],
    *,
    uses: int,
    daily: Mapping[str, int],
    last_seen: str,
    writer: str,
    sequence: int,
    now: datetime,
) -> dict[str, Any]:
    """`status` with the uses added and `writer`'s stamp set; other fields kept as they are."""
    out = dict(status)
    out["lastSeen"] = max(str(status.get("lastSeen") or ""), last_seen)
    out["useCount"] = int(status.get("useCount") or 0) + uses
    out["dailyUses"] = merge_daily_uses(status.get("dailyUses") or {}, daily, now)
    out[LEARNER_WRITES] = _stamps(status, writer, sequence, now)
    return out

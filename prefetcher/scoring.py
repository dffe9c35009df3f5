"""How much an image is wanted: recent and frequent use, decayed over days.

score = sum over days d of uses(d) * 0.5 ** (age(d) / half_life), with the age counted in
whole days from the start of today (UTC). Scores therefore change once a day, not on every
sweep, so a converged cluster does not rewrite CachedImage status each time it looks.
Learned images unused for `image_retention` are released (no longer wanted), and so are
Observed and Catalog images no node (registry) has listed for that long; declared images
stay wanted until their CachedImage is deleted.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from imagesync.names import SOURCE_DECLARED
from prefetcher.model import WantedImage
from prefetcher.observe import parse_timestamp

_DAY = 86400.0


def day_start(moment: datetime) -> datetime:
    """The start of the UTC day of `moment`: scores change only when it does."""
    moment = moment.astimezone(UTC)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _decay(age_days: float, half_life: float) -> float:
    if half_life <= 0:
        return 1.0 if age_days <= 0 else 0.0
    return float(0.5 ** (max(age_days, 0.0) * _DAY / half_life))


def score(image: WantedImage, now: datetime, half_life: float) -> float:
    """Decayed use count, rounded to 3 decimals; stable within a UTC day."""
    today = day_start(now)
    total = 0.0
    if image.daily_uses:
        for day, uses in image.daily_uses.items():
            try:
                moment = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
            except ValueError:
                continue
            total += max(uses, 0) * _decay((today - moment) / timedelta(days=1), half_life)
    elif image.use_count > 0 and image.last_seen is not None:
        # Older objects without per-day counts: all uses dated to the last use.
        age = (today - day_start(image.last_seen)) / timedelta(days=1)
        total = image.use_count * _decay(age, half_life)
    return round(total, 3)


def last_used(image: WantedImage) -> datetime | None:
    """The latest sign of use: status.lastSeen, a profile's lastSeen, else creation."""
    moments = [image.last_seen] if image.last_seen else []
    for profile in image.profiles:
        moment = parse_timestamp(profile.get("lastSeen"))
        if moment is not None:
            moments.append(moment)
    if moments:
        return max(moments)
    return image.created


def is_declared(image: WantedImage) -> bool:
    return image.source == SOURCE_DECLARED


def is_wanted(image: WantedImage, now: datetime, retention: float) -> bool:
    """Declared: always. Learned: used within `retention` (or of unknown age)."""
    if is_declared(image):
        return True
    return used_within(last_used(image), now, retention)


def used_within(used: datetime | None, now: datetime, retention: float) -> bool:
    """A learned image last used at `used` is still wanted at `now` (unknown age: yes)."""
    return used is None or (now - used).total_seconds() <= retention


def rank_key(image: str, source_rank: int, image_score: float) -> tuple[int, float, str]:
    """Sort key, best first: the best source (`sourceOrder`: declared, learned, observed,
    catalog by default), then higher score, then the reference."""
    return (source_rank, -image_score, image)

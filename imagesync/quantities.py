"""Durations, sizes and bandwidths as written in a ConfigMap: `30m`, `20Gi`, `10Gbit/s`."""

from __future__ import annotations

import re
from typing import Any

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
    "ti": 1024**4,
    "tib": 1024**4,
}


def parse_duration(value: Any) -> float:
    """Seconds from `90`, `90s`, `30m`, `1h30m`, `14d`, `250ms`."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 30m, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"expected a non-negative duration, got {value!r}")
        return float(value)
    text = str(value).strip()
    if not text:
        raise ValueError("expected a duration like 30m, got an empty string")
    pos, total = 0, 0.0
    for match in _DURATION_RE.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        try:
            return parse_duration(float(text))
        except ValueError:
            raise ValueError(
                f"expected a duration like 90s, 30m, 1h30m or 14d, got {value!r}"
            ) from None
    return total


def parse_size(value: Any) -> int:
    """Bytes from `512Mi`, `20GB`, `1.5G`, or a plain number."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 20Gi, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"expected a non-negative size, got {value!r}")
        return int(value)
    match = _SIZE_RE.match(str(value).strip())
    if not match:
        raise ValueError(f"expected a size like 512Mi or 20GB, got {value!r}")
    unit = (match.group(2) or "").lower()
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


_BANDWIDTH_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?)(b|bps|B|Bps)?(?:/s)?\s*$", re.I)
_BANDWIDTH_UNITS = {
    "": 1.0,
    "k": 1e3,
    "m": 1e6,
    "g": 1e9,
    "t": 1e12,
    "ki": 1024.0,
    "mi": 1024.0**2,
    "gi": 1024.0**3,
    "ti": 1024.0**4,
}


def parse_bandwidth(value: Any) -> float:
    """Bytes per second from `100MB/s`, `10Gbit/s`, `1Gbps` (bits), `50MiB/s` or a number of
    bytes."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"bandwidth must be positive, got {value!r}")
        return float(value)
    text = str(value).replace("bit/s", "bps")
    match = _BANDWIDTH_RE.match(text)
    if not match:
        raise ValueError(f"expected a bandwidth like 100MB/s or 10Gbit/s, got {value!r}")
    number = float(match.group(1)) * _BANDWIDTH_UNITS[match.group(2).lower()]
    if (match.group(3) or "B") in ("b", "bps"):
        number /= 8
    if number <= 0:
        raise ValueError(f"bandwidth must be positive, got {value!r}")
    return number

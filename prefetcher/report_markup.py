"""Escaping and the small HTML pieces every section of the report page is built from."""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

from prefetcher.report_query import ReportQuery

# One letter per state keeps 2,000 grid cells light; the legend spells them out.
STATE_CLASS = {"present": "p", "pulling": "u", "missing": "m", "failed": "f", "ineligible": "i"}
WORST_FIRST = {"failed": 0, "pulling": 1, "missing": 2, "present": 3, "ineligible": 4}


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def thousands(value: Any) -> str:
    """A count with thousands separators (174,244 reads faster than 174244)."""
    return f"{value:,}" if isinstance(value, int) else escape(value)


def spaced_time(stamp: str | None) -> str:
    """`2026-11-22T03:04:00Z` as `2026-11-22 03:04:00Z`: a line break may fall between."""
    return (stamp or "").replace("T", " ", 1)


def name_list(names: Iterable[str]) -> str:
    """Names as a wrapping list that never breaks inside a name (they hold hyphens)."""
    return "\n".join(f"<span>{escape(name)}</span>" for name in names)


def percent(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "0%"


def short_name(image: str) -> str:
    """The last path segment, cut to fit a grid column's slanted heading."""
    name = image.rsplit("/", 1)[-1]
    return name if len(name) <= 30 else name[:29] + "\u2026"


def link(query: ReportQuery, text: str, **changes: Any) -> str:
    return f'<a href="{escape(query.params(**changes))}">{escape(text)}</a>'


def state_dot(state: str) -> str:
    return f'<span class="dot {STATE_CLASS.get(state, "i")}"></span>{escape(state)}'

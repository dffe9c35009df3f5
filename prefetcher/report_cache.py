"""The report of the current plan, built once and served to every reader of it.

At 1,000 nodes x 200 images the report holds 200,000 pairs: building it per request would
spend a CPU second per refresh of every open page. A plan changes only when a pass runs, so
the report is built once per plan (and per what the runtime did with it) and each request
only filters, renders or serializes it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import orjson

from prefetcher.model import Plan
from prefetcher.report import SweepInfo, build_report
from prefetcher.report_page import render_html
from prefetcher.report_query import ReportQuery, filter_report


class ReportCache:
    """`build_report(plan, sweep)` of the last plan seen; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plan: Plan | None = None
        self._sweep: SweepInfo | None = None
        self._report: dict[str, Any] = {}

    def report(self, plan: Plan, sweep: SweepInfo | None) -> dict[str, Any]:
        """The full report of `plan` (read-only: it is shared between requests)."""
        with self._lock:
            if plan is not self._plan or sweep != self._sweep:
                self._report = build_report(plan, sweep)
                self._plan, self._sweep = plan, sweep
            return self._report

    def json(
        self,
        plan: Plan,
        sweep: SweepInfo | None,
        query: ReportQuery,
        extra: Mapping[str, Any],
    ) -> bytes:
        """`/report`: the report narrowed by `query`, with `extra` top-level keys."""
        report = filter_report(self.report(plan, sweep), query)
        report.update(extra)
        return orjson.dumps(report, default=str)

    def html(
        self,
        plan: Plan,
        sweep: SweepInfo | None,
        query: ReportQuery,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """`/`: the page, narrowed and paged by `query`, with `extra` top-level keys (the
        runtime's sources section)."""
        return render_html({**self.report(plan, sweep), **(extra or {})}, query)

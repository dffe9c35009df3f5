"""The report of the current plan, built once and served to every reader of it.

At 1,000 nodes x 200 images the report holds 200,000 pairs: building it per request would
spend a CPU second per refresh of every open page. A plan changes only when a pass runs, so
the report is built once per plan, by the pass (`prepare`), and its JSON serialized once:
a request for the whole report adds only what changes without a new plan (what the runtime
did with the plan, and the runtime's own sections), right after the summary, so a reader
of the first kilobytes has every summary. A filtered request or the page narrows the built
report (kept beside its JSON: building it again took the page from 0.3 to 1.6 s at that
size), and the last plan's report and JSON go before the next ones are built.

A pass prepares its plan's report only while someone reads reports (a request within
READERS_WINDOW): at that size building it took 0.1 to 0.4 s of the pass's thread, 60 to 90
times while a fleet converged, with nobody reading. After a quiet spell the first request
builds the report of the current plan (0.2 to 0.5 s at that size), and the passes prepare
them again from then on.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Mapping
from typing import Any

import orjson

from prefetcher.model import Plan
from prefetcher.report import SweepInfo, build_report, sweep_section
from prefetcher.report_page import render_html
from prefetcher.report_pages import FULL_PAIRS, paged_report, pair_count, pairs_shown
from prefetcher.report_query import PAIRS_ALL, ReportQuery, filter_report

# The keys that come before the runtime's sections in the JSON; the grid and the lists come
# after them.
HEAD_KEYS = ("generatedAt", "summary")
SWEEP_KEY = "lastSweep"
# Wall seconds after a request during which passes prepare their plans' reports (the page
# reloads every 60 s).
READERS_WINDOW = 600.0


def _inner(obj: Mapping[str, Any]) -> bytes:
    """A JSON object's members without the braces, to be joined with others'. A copy of
    exactly their size: orjson's own buffer is reserved many times larger than the text (a
    10 MB report took 133 MB of address space), and a view would keep it."""
    return orjson.dumps(obj, default=str)[1:-1]


class ReportCache:
    """`build_report(plan, sweep)` of the last plan seen, and its JSON; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plan: Plan | None = None
        self._body: dict[str, Any] = {}
        self._head_json = b""
        self._tail_json = b""
        self._pairs = 0
        self._read_at = -math.inf  # time.monotonic() of the last request

    def _built_locked(self, plan: Plan) -> dict[str, Any]:
        if plan is not self._plan:
            # The last plan's report and JSON go first: two of each at once were 70 MB.
            self._body, self._head_json, self._tail_json = {}, b"", b""
            self._body = build_report(plan)
            self._pairs = pair_count(self._body)
            self._plan = plan
        return self._body

    def _built(self, plan: Plan) -> dict[str, Any]:
        """The report of `plan` without what the runtime did with it (built once per plan)."""
        with self._lock:
            return self._built_locked(plan)

    def report(self, plan: Plan, sweep: SweepInfo | None) -> dict[str, Any]:
        """The full report of `plan` (read-only: its parts are shared between requests)."""
        return {**self._built(plan), SWEEP_KEY: sweep_section(plan, sweep)}

    def prepare(self, plan: Plan) -> None:
        """Build the report of a new plan now, on the pass's thread, before the plan is
        shown, and serialize it when `/report` sends it whole by default (up to FULL_PAIRS
        pairs): a request then only sends bytes. On a busy process a request's thread gets a
        small share of the interpreter; the pass's thread has it already. A larger report is
        serialized for `?pairs=all` only, at its first request (0.1 to 0.5 s at 1,000 x 200),
        and its 22 MiB of JSON are not kept for every plan. With no reader for
        READERS_WINDOW nothing is built, and the last report built is let go."""
        with self._lock:
            if time.monotonic() - self._read_at > READERS_WINDOW:
                self._plan, self._body, self._head_json, self._tail_json = None, {}, b"", b""
                return
            self._built_locked(plan)
            small = self._pairs <= FULL_PAIRS
        if small:
            self._serialized(plan)

    def _serialized(self, plan: Plan) -> tuple[bytes, bytes]:
        """The plan's report as JSON members: the summaries, and the rest (serialized once)."""
        with self._lock:
            body = self._built_locked(plan)
            if not self._head_json:
                self._head_json = _inner({k: body[k] for k in HEAD_KEYS})
                self._tail_json = _inner(
                    {k: v for k, v in body.items() if k not in HEAD_KEYS and k != SWEEP_KEY}
                )
            return self._head_json, self._tail_json

    def json(
        self,
        plan: Plan,
        sweep: SweepInfo | None,
        query: ReportQuery,
        extra: Mapping[str, Any],
    ) -> bytes:
        """`/report`: the report narrowed by `query`, with `extra` top-level keys."""
        return b"".join(self.json_chunks(plan, sweep, query, extra))

    def json_chunks(
        self,
        plan: Plan,
        sweep: SweepInfo | None,
        query: ReportQuery,
        extra: Mapping[str, Any],
    ) -> list[bytes]:
        """`json()` as the parts that make it up, for the server to send one after another:
        the whole report is the JSON prepared for the plan, not a copy of it per request. A
        report of more pairs than FULL_PAIRS (after the filters) holds a page of them unless
        `pairs=all` asks for every one (`prefetcher.report_pages`)."""
        with self._lock:
            self._read_at = time.monotonic()
            body, pairs = self._built_locked(plan), self._pairs
        if query.filtered or extra.keys() & body.keys():
            report = filter_report(self.report(plan, sweep), query)
            report.update(extra)
            if query.filtered:
                pairs = pair_count(report)
            if pairs_shown(query, pairs) != PAIRS_ALL:
                report = paged_report(report, query, pairs)
            return [orjson.dumps(report, default=str)]
        if pairs_shown(query, pairs) != PAIRS_ALL:
            report = paged_report({**self.report(plan, sweep), **extra}, query, pairs)
            return [orjson.dumps(report, default=str)]
        head, tail = self._serialized(plan)
        middle = _inner({SWEEP_KEY: sweep_section(plan, sweep), **extra})
        return [b"{", head, b",", middle, b",", tail, b"}"]

    def html(
        self,
        plan: Plan,
        sweep: SweepInfo | None,
        query: ReportQuery,
        extra: Mapping[str, Any] | None = None,
    ) -> str:
        """`/`: the page, narrowed and paged by `query`, with `extra` top-level keys (the
        runtime's sources section)."""
        self._read_at = time.monotonic()
        return render_html({**self.report(plan, sweep), **(extra or {})}, query)

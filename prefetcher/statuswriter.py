"""CachedImage status patches sent by a thread of their own, so a pass never waits for them.

A pass plans up to one status patch per image (its counts, score and last error), and at
1,000 nodes x 200 images sending 200 of them in the pass held every node's next puller back
behind them. The pass now hands its patches to this writer and goes on. The writer keeps,
per image, only what the latest pass asked for (a pass plans the whole difference between
the cache and what it wants, so an older pass's patch that is still waiting is replaced,
never sent late over a newer one), drops the fields it already sent that the watch has not
brought back yet (the next passes plan them again until it does), and sends each
count-only patch at most every STATUS_COUNTS_INTERVAL while a fleet converges (a score or
an error is news: written at once, with the counts). A write that fails is logged and
counted; the next pass plans it again and the writer sends it then. It writes between
plans, like the informers decode, and only while this replica leads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from imagesync.kubeclient import KubeError
from prefetcher.informer import Clock
from prefetcher.model import StatusUpdate
from prefetcher.plangate import PlanGate

log = logging.getLogger("prefetcher.controller")

KIND = "update status"
# A CachedImage's status counts (nodesWanted, nodesPresent) are rewritten at most this often
# (clock seconds): while a fleet converges they change with every pass, and the report is
# the live view. Score and lastError changes are written at once.
STATUS_COUNTS_INTERVAL = 30.0
COUNT_FIELDS = frozenset({"nodesWanted", "nodesPresent"})
# Longest wall wait between two looks at deferred count patches (the clock may be faster).
POLL = 1.0

Send = Callable[[str, Mapping[str, Any]], bool]  # name, status patch → False: object gone


class StatusWriter:
    """The latest status patch of each CachedImage, sent in the background."""

    def __init__(
        self,
        send: Send,
        clock: Clock,
        *,
        guard: Callable[[str], None],
        gate: PlanGate | None = None,
        on_written: Callable[[], None] = lambda: None,
        on_error: Callable[[KubeError], None] = lambda error: None,
        counts_interval: float = STATUS_COUNTS_INTERVAL,
    ) -> None:
        self._send = send
        self._clock = clock
        self._guard = guard
        self._gate = gate
        self._on_written = on_written
        self._on_error = on_error
        self._counts_interval = counts_interval
        self._lock = threading.Condition()
        self._pending: dict[str, dict[str, Any]] = {}  # name → fields to send
        self._unseen: dict[str, dict[str, Any]] = {}  # name → fields sent, not yet watched
        self._counts_at: dict[str, float] = {}  # name → clock time of its last count write
        self._busy = False  # a write is on its way
        self._stop = False
        self._thread: threading.Thread | None = None

    # --- the pass's side -------------------------------------------------------------------

    def offer(self, updates: Iterable[StatusUpdate]) -> int:
        """A pass's status patches (all of them: what it does not name has nothing to send).
        Returns how many images have a patch waiting."""
        with self._lock:
            pending: dict[str, dict[str, Any]] = {}
            for update in updates:
                sent = self._unseen.get(update.name, {})
                fields = {k: v for k, v in update.patch.items() if k not in sent or sent[k] != v}
                if fields:
                    pending[update.name] = fields
            self._pending = pending
            if pending and self._thread is None and not self._stop:
                self._thread = threading.Thread(target=self._run, name="status-writer", daemon=True)
                self._thread.start()
            self._lock.notify_all()
            return len(pending)

    def seen(self, name: str) -> None:
        """The watch brought a version of `name`: the cache holds what was sent before it."""
        with self._lock:
            self._unseen.pop(name, None)

    def forget(self, name: str) -> None:
        """`name` was deleted."""
        with self._lock:
            self._unseen.pop(name, None)
            self._counts_at.pop(name, None)
            self._pending.pop(name, None)

    def waiting(self) -> int:
        """Images with a patch not sent yet (count-only ones included)."""
        with self._lock:
            return len(self._pending) + self._busy

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait (wall seconds) until every patch that is due has been sent or has failed;
        True if it came to that. Count-only patches that must wait are not waited for."""
        with self._lock:
            self._lock.notify_all()
            return self._lock.wait_for(
                lambda: not self._busy and self._next_due(self._clock.now())[0] is None,
                timeout,
            )

    def stop(self) -> None:
        with self._lock:
            self._stop = True
            self._pending.clear()
            self._lock.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5.0)

    # --- the writer's thread ---------------------------------------------------------------

    def _next_due(self, now: float) -> tuple[str | None, float]:
        """The first image whose patch may go now, and else when the next one may."""
        later = float("inf")
        for name, fields in self._pending.items():
            last = self._counts_at.get(name)
            if last is None or not fields.keys() <= COUNT_FIELDS:
                return name, now
            due = last + self._counts_interval
            if now >= due:
                return name, now
            later = min(later, due)
        return None, later

    def _take(self) -> tuple[str, dict[str, Any]] | None:
        """The next patch to send (None: stopping), waiting for one to be due."""
        with self._lock:
            while not self._stop:
                now = self._clock.now()
                name, due = self._next_due(now)
                if name is not None:
                    self._busy = True
                    return name, self._pending.pop(name)
                self._lock.notify_all()  # for flush(): nothing due
                self._lock.wait(None if due == float("inf") else min(POLL, due - now))
            return None

    def _run(self) -> None:
        while (taken := self._take()) is not None:
            name, fields = taken
            try:
                if self._gate is not None:
                    self._gate.wait()  # between plans, like the informers
                self._write(name, fields)
            finally:
                with self._lock:
                    self._busy = False
                    self._lock.notify_all()

    def _write(self, name: str, fields: dict[str, Any]) -> None:
        try:
            self._guard(KIND)
        except Exception:  # not the leader any more, or shutting down: nothing is sent
            with self._lock:
                self._pending.clear()
            return
        now = self._clock.now()
        try:
            exists = self._send(name, fields)
        except KubeError as error:
            self._on_error(error)  # the next pass plans it again, and it is sent then
            return
        with self._lock:
            if not exists:
                self._unseen.pop(name, None)
                self._counts_at.pop(name, None)
                return
            self._unseen.setdefault(name, {}).update(fields)
            if fields.keys() & COUNT_FIELDS:
                self._counts_at[name] = now
            # A pass that planned during the write asked for what it sent: not again.
            waiting = self._pending.get(name)
            if waiting is not None:
                left = {k: v for k, v in waiting.items() if k not in fields or fields[k] != v}
                if left:
                    self._pending[name] = left
                else:
                    del self._pending[name]
        self._on_written()

"""The learner: buffers what admitted pods used and writes it to CachedImage objects, off the request path.

Each gunicorn worker has one Recorder. `record()` is what a request pays: a dictionary
update under a lock. A background thread calls `flush()` every `learnFlushInterval`, which
writes each buffered image once, however many pods used it meanwhile.

Several workers of several replicas write the same objects at once, so every write is
conditional: the main resource (spec.profiles) and the /status subresource (lastSeen,
useCount, dailyUses) are replaced with the `resourceVersion` just read, and a 409 Conflict
means "someone else wrote first": read again, merge again, write again. Counts are added
to what is stored, never overwritten, so no use is lost or counted twice. A write whose
answer was lost (a timeout, a 5xx: it may have landed) is kept "in doubt" with its sequence
number; the next write reads the writer's stamp back (`imagesync.usage`) and resends only
what did not land. A Declared object's spec belongs to the user and is never written;
only its usage status is.

Failures never reach a request, and they stay with their image: an image whose write
fails waits out its own backoff while the others are written. Only an API server that
cannot be reached several times in a row ends a flush early. Every failure is counted
and logged with the reason.
The buffer holds at most `learnMaxPending` distinct images and `learnMaxPendingBytes` of
placement profiles (measured as their JSON); beyond that sightings of new images, and new
profiles of known images, are dropped and counted, so memory stays bounded whatever the
API server does and however large the pods are. A single profile over MAX_PROFILE_BYTES
(no real pod's placement is that large) is never held. A use whose profile is not held
still counts for an image already buffered with other profiles; a new image is not held
without one (it would read as "wanted on every node").
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from imagesync.cachedimage import format_time
from imagesync.config import Config
from imagesync.kubeclient import KubeError
from webhook.learning import Sighting
from webhook.metrics import Metrics
from webhook.pending import InDoubt, PendingImage
from webhook.store import CachedImageStore, KubeCachedImageStore
from webhook.usage_write import LostAnswer, write_image_usage

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 60.0
# A placement profile's JSON beyond this is not kept (real ones are well under 2 KiB).
MAX_PROFILE_BYTES = 64 * 1024
DEFAULT_MAX_PENDING_BYTES = 8 * 1024 * 1024
CLOSE_JOIN_SECONDS = 15.0
# A flush stops early after this many images in a row could not reach the API server.
MAX_UNREACHABLE_IN_A_ROW = 3
# Writes in doubt kept per image; beyond it the oldest is forgotten (an undercount at worst).
MAX_DOUBTS = 32
# Client errors that no retry can fix: the object we build is refused as such.
_PERMANENT_STATUSES = frozenset({400, 422})

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class FlushResult:
    written: int = 0
    failed: int = 0
    requeued: int = 0
    last_error: str = ""
    deferred: int = 0  # images waiting out their own backoff
    aborted: bool = False  # the API server could not be reached: the rest waits


@dataclass
class ImageRetry:
    """One image's failures in a row, and the monotonic time its next write is due."""

    failures: int = 0
    due: float = 0.0


class Recorder:
    """Per-worker buffer plus flusher; `record` never raises and never blocks on the network."""

    def __init__(
        self,
        store: CachedImageStore,
        metrics: Metrics,
        *,
        flush_interval: float,
        max_pending: int,
        max_pending_bytes: int = DEFAULT_MAX_PENDING_BYTES,
        clock: Clock = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._flush_interval = max(flush_interval, 0.05)
        self._max_pending = max_pending
        self._max_pending_bytes = max_pending_bytes
        self._pending_bytes = 0
        self._clock = clock
        self._monotonic = monotonic  # per-image backoff
        self._pending: dict[str, PendingImage] = {}
        # Counted under the lock and published by the flusher: the request path touches no
        # metric files for learning.
        self._seen_unpublished = 0
        self._stamp_cache: tuple[int, str] = (-1, "")
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.reached_api = False
        self.last_error = ""
        # Flusher state, under _flush_lock.
        self.writer_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._sequence = itertools.count(1)
        self._in_doubt: dict[str, list[InDoubt]] = {}
        self._retry: dict[str, ImageRetry] = {}

    # --- request path -----------------------------------------------------------------

    def record(self, sighting: Sighting) -> None:
        seen = self._timestamp()
        day = seen[:10]
        profile = sighting.profile
        # The identity of a profile: a digest of its JSON (equal pods build equal dicts in the
        # same order; profiles equal but ordered differently are merged when written).
        try:
            encoded = orjson.dumps(profile)
        except TypeError:  # deeper than orjson nests (255): rare enough for the slow way
            encoded = repr(profile).encode()
        size = len(encoded)
        key = hashlib.blake2b(encoded, digest_size=16).digest()
        images = sighting.images
        dropped = dropped_profiles = 0
        with self._lock:
            fits = size <= MAX_PROFILE_BYTES
            pending = self._pending
            for image in images:
                entry = pending.get(image)
                room = fits and self._pending_bytes + size <= self._max_pending_bytes
                if entry is None:
                    # A new image is held only with its profile: one without any would read
                    # as "wanted on every node".
                    if len(pending) >= self._max_pending or not room:
                        dropped += 1
                        dropped_profiles += not room
                        continue
                    entry = pending[image] = PendingImage()
                keep = profile if room or key in entry.profiles else None
                dropped_profiles += keep is None
                if entry.add(key, keep, size, day, seen):
                    self._pending_bytes += size
            self._seen_unpublished += len(images) - dropped
        if dropped:
            self._metrics.dropped.inc(dropped)
        if dropped_profiles:
            self._metrics.dropped_profiles.inc(dropped_profiles)
        self._ensure_started()

    def _timestamp(self) -> str:
        """`format_time(now)`, formatted once per second rather than once per request.

        With the real clock the second comes from `time.time()`: no datetime per request.
        """
        now = None if self._clock is utc_now else self._clock()
        second = int(time.time() if now is None else now.timestamp())
        cached = self._stamp_cache
        if cached[0] != second:
            moment = datetime.fromtimestamp(second, UTC) if now is None else now
            cached = self._stamp_cache = (second, format_time(moment))
        return cached[1]

    def publish_metrics(self) -> None:
        with self._lock:
            seen, self._seen_unpublished = self._seen_unpublished, 0
            pending = len(self._pending)
        if seen:
            self._metrics.images_seen.inc(seen)
        self._metrics.pending.set(pending)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        with self._lock:
            return self._pending_bytes

    # --- flushing ---------------------------------------------------------------------

    def flush(self) -> FlushResult:
        """Write everything buffered now whose image is not backing off; what fails goes
        back into the buffer (or stays in doubt) with that image's own backoff."""
        with self._flush_lock:
            now = self._monotonic()
            with self._lock:
                due = {
                    image: entry
                    for image, entry in self._pending.items()
                    if self._retry.get(image, _NOT_FAILING).due <= now
                }
                for image in due:
                    del self._pending[image]
                self._pending_bytes = sum(entry.size for entry in self._pending.values())
                deferred = len(self._pending)
            for image in self._in_doubt:
                if image not in due and self._retry.get(image, _NOT_FAILING).due <= now:
                    due[image] = PendingImage()
            written = failed = unreachable_in_a_row = 0
            error = ""
            leftovers: list[tuple[str, PendingImage]] = []
            images = iter(due.items())
            for image, entry in images:
                try:
                    action = self._write_one(image, entry)
                except Exception as exc:  # the flusher must never die
                    failed += 1
                    lost = isinstance(exc, LostAnswer)
                    cause = exc.cause if isinstance(exc, LostAnswer) else exc
                    error, retry = self._failed(image, cause, in_doubt=lost)
                    if retry:
                        leftovers.append((image, entry))
                    unreachable = isinstance(cause, KubeError) and cause.status == 0
                    unreachable_in_a_row = unreachable_in_a_row + 1 if unreachable else 0
                    if unreachable_in_a_row >= MAX_UNREACHABLE_IN_A_ROW:
                        leftovers.extend(images)  # the API server is down: the rest waits
                        break
                else:
                    written += 1
                    unreachable_in_a_row = 0
                    self._retry.pop(image, None)
                    self.reached_api = True
                    self._metrics.images_learned.labels(action=action).inc()
            self._requeue(leftovers)
            with self._lock:  # forget the backoff of images no longer waiting
                self._retry = {
                    image: retry
                    for image, retry in self._retry.items()
                    if image in self._pending or image in self._in_doubt
                }
            self.last_error = error
            return FlushResult(
                written=written,
                failed=failed,
                requeued=len(leftovers),
                last_error=error,
                deferred=deferred,
                aborted=unreachable_in_a_row >= MAX_UNREACHABLE_IN_A_ROW,
            )

    def _write_one(self, image: str, entry: PendingImage) -> str:
        """One image's write with a fresh sequence number; a lost answer leaves it in doubt."""
        sequence = next(self._sequence)
        doubts = self._in_doubt.get(image, [])
        try:
            action = write_image_usage(
                self._store,
                self._metrics,
                image,
                entry,
                doubts,
                writer_id=self.writer_id,
                sequence=sequence,
                clock=self._clock,
            )
        except LostAnswer:
            if entry.count:
                self._in_doubt[image] = [*doubts, InDoubt(sequence, entry)][-MAX_DOUBTS:]
            raise
        self._in_doubt.pop(image, None)
        return action

    def _failed(self, image: str, exc: Exception, *, in_doubt: bool) -> tuple[str, bool]:
        """Count, log and schedule the retry of one failed image; (error text, requeue?).

        Uses sent in a write that may have landed are in doubt, not requeued."""
        retry = self._retry.setdefault(image, ImageRetry())
        retry.failures += 1
        delay = min(self._flush_interval * 2**retry.failures, MAX_BACKOFF_SECONDS)
        retry.due = self._monotonic() + delay
        if not isinstance(exc, KubeError):
            self._metrics.flush_errors.labels(reason="internal").inc()
            log.error(
                "learning %s failed unexpectedly; retrying in %.0fs",
                image,
                delay,
                exc_info=exc,
                extra={"image": image, "reason": "internal"},
            )
            return f"unexpected {type(exc).__name__}: {exc}", not in_doubt
        reason = _reason(exc)
        self._metrics.flush_errors.labels(reason=reason).inc()
        if exc.status in _PERMANENT_STATUSES:
            log.error(
                "learning %s: giving up, the API server refuses it: %s",
                image,
                exc,
                extra={"image": image, "reason": reason},
            )
            return str(exc), False
        log.warning(
            "learning %s failed, retrying in %.0fs: %s",
            image,
            delay,
            exc,
            extra={"image": image, "reason": reason},
        )
        return str(exc), not in_doubt

    def _requeue(self, leftovers: Iterable[tuple[str, PendingImage]]) -> None:
        dropped = 0
        with self._lock:
            for image, entry in leftovers:
                if not entry.count:
                    continue
                current = self._pending.get(image)
                if current is not None:
                    current.absorb(entry)
                elif len(self._pending) < self._max_pending:
                    self._pending[image] = entry
                else:
                    dropped += entry.count
            self._pending_bytes = sum(entry.size for entry in self._pending.values())
        if dropped:
            self._metrics.dropped.inc(dropped)
        self.publish_metrics()

    # --- background thread ------------------------------------------------------------

    def _ensure_started(self) -> None:
        """Start the flusher in the process that records (after gunicorn forked the worker)."""
        if self._thread is not None or self._stop.is_set():
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="image-sync-learner", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        failures = 0
        while not self._stop.wait(
            min(
                self._flush_interval * (2**failures), max(MAX_BACKOFF_SECONDS, self._flush_interval)
            )
        ):
            try:
                if not self.pending and not self._in_doubt:
                    self.publish_metrics()
                    continue
                result = self.flush()
                failures = min(failures + 1, 10) if result.aborted else 0
            except Exception:  # the flusher must outlive any bug: requests keep recording
                log.exception("learner flush loop error; continuing")
                failures = min(failures + 1, 10)

    def close(self) -> FlushResult:
        """Stop the thread and write what is left (gunicorn's worker_exit hook calls this)."""
        self._stop.set()
        if self._thread is not None:
            # The thread is either waiting (it wakes at once) or in a flush, which the client's
            # request timeouts bound; gunicorn's graceful timeout bounds the rest.
            self._thread.join(timeout=CLOSE_JOIN_SECONDS)
        if not self.pending and not self._in_doubt:
            return FlushResult()
        return self.flush()


_NOT_FAILING = ImageRetry()


def _reason(exc: KubeError) -> str:
    if exc.status == 0:
        return "unreachable"
    if exc.conflict:
        return "conflict"
    if exc.status >= 500:
        return "server_error"
    return f"http_{exc.status}"


def build_recorder(config: Config, kubeconfig: str | None, metrics: Metrics) -> Recorder | None:
    """A Recorder when an API server is configured, else None (mutation still works)."""
    from imagesync.kubeclient import load_api_client

    try:
        api_client = load_api_client(kubeconfig)
    except KubeError as exc:
        log.warning("learning is off: %s", exc)
        return None
    except Exception as exc:  # a broken kubeconfig must not stop pods from being admitted
        log.warning("learning is off: cannot load the kubeconfig: %s", exc)
        return None
    return Recorder(
        KubeCachedImageStore(api_client),
        metrics,
        flush_interval=config.learn_flush_interval,
        max_pending=config.learn_max_pending,
        max_pending_bytes=config.learn_max_pending_bytes,
    )

"""The learner: buffers what admitted pods used and writes it to CachedImage objects, off the request path.

Each gunicorn worker has one Recorder. `record()` is what a request pays: a dictionary
update under a lock. A background thread calls `flush()` every `learnFlushInterval`, which
writes each buffered image once, however many pods used it meanwhile.

Several workers of several replicas write the same objects at once, so every write is
conditional: the main resource (spec.profiles) and the /status subresource (lastSeen,
useCount, dailyUses) are replaced with the `resourceVersion` just read, and a 409 Conflict
means "someone else wrote first": read again, merge again, write again. Counts are added
to what is stored, never overwritten, so no use is lost or counted twice. A Declared
object's spec belongs to the user and is never written; only its usage status is.

Failures never reach a request: an API server that is down or refuses a write leaves the
images in the buffer for the next flush (with backoff), counted and logged with the reason.
The buffer holds at most `learnMaxPending` distinct images; beyond that sightings of new
images are dropped and counted, so memory stays bounded whatever the API server does.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson

from imagesync.cachedimage import (
    MAX_PROFILES,
    PlacementProfile,
    format_time,
    merge_daily_uses,
    merge_profiles,
    new_cached_image,
    object_name,
)
from imagesync.config import Config
from imagesync.kubeclient import KubeError
from imagesync.names import SOURCE_LEARNED
from webhook.learning import Sighting
from webhook.metrics import Metrics

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 60.0
CONFLICT_RETRIES = 8
# Profiles one buffered image holds between flushes; merge_profiles keeps MAX_PROFILES of them.
MAX_PENDING_PROFILES = 4 * MAX_PROFILES
CLOSE_JOIN_SECONDS = 15.0
# Client errors that no retry can fix: the object we build is refused as such.
_PERMANENT_STATUSES = frozenset({400, 422})

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class CachedImageStore(Protocol):
    """The four calls the learner makes; each raises KubeError (status 0: not reached)."""

    def get(self, name: str) -> dict[str, Any] | None: ...

    def create(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def replace(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def replace_status(self, body: dict[str, Any]) -> dict[str, Any]: ...


@dataclass
class PendingImage:
    """Usage of one image not yet written: profiles by identity, uses per day, last seen.

    A profile is held as the sighting brought it, with when it was last seen beside it:
    stamping a copy with `lastSeen` waits for the flush, off the request path.
    """

    profiles: dict[bytes, tuple[PlacementProfile, str]] = field(default_factory=dict)
    daily: dict[str, int] = field(default_factory=dict)
    count: int = 0
    last_seen: str = ""

    def add(self, key: bytes, profile: PlacementProfile, day: str, seen: str) -> None:
        """Count one use; keep the profile unless this image already holds too many."""
        profiles = self.profiles
        if key in profiles or len(profiles) < MAX_PENDING_PROFILES:
            profiles[key] = (profile, seen)
        daily = self.daily
        daily[day] = daily.get(day, 0) + 1
        self.count += 1
        if seen > self.last_seen:
            self.last_seen = seen

    def absorb(self, other: PendingImage) -> None:
        for key, (profile, seen) in other.profiles.items():
            mine = self.profiles.get(key)
            if mine is None and len(self.profiles) >= MAX_PENDING_PROFILES:
                continue
            if mine is None or seen > mine[1]:
                self.profiles[key] = (profile, seen)
        for day, uses in other.daily.items():
            self.daily[day] = self.daily.get(day, 0) + uses
        self.count += other.count
        self.last_seen = max(self.last_seen, other.last_seen)

    def profile_list(self) -> list[PlacementProfile]:
        stamped: list[PlacementProfile] = []
        for profile, seen in self.profiles.values():
            with_time = profile.copy()
            with_time["lastSeen"] = seen
            stamped.append(with_time)
        return merge_profiles([], stamped)


@dataclass(frozen=True)
class FlushResult:
    written: int = 0
    failed: int = 0
    requeued: int = 0
    last_error: str = ""


def usage_status(status: dict[str, Any], pending: PendingImage, now: datetime) -> dict[str, Any]:
    """`status` with the pending usage added; fields the prefetcher owns are kept as they are."""
    out = dict(status)
    out["lastSeen"] = max(str(status.get("lastSeen") or ""), pending.last_seen)
    out["useCount"] = int(status.get("useCount") or 0) + pending.count
    out["dailyUses"] = merge_daily_uses(status.get("dailyUses") or {}, pending.daily, now)
    return out


def learned_spec_update(obj: dict[str, Any], pending: PendingImage) -> dict[str, Any] | None:
    """The object with merged profiles, or None when its spec must stay (Declared, unchanged)."""
    spec = obj.get("spec") or {}
    if spec.get("source", SOURCE_LEARNED) != SOURCE_LEARNED:
        return None
    stored = list(spec.get("profiles") or [])
    merged = merge_profiles(stored, pending.profile_list())
    if merged == stored:
        return None
    updated = copy.deepcopy(obj)
    updated.setdefault("spec", {})["profiles"] = merged
    return updated


class Recorder:
    """Per-worker buffer plus flusher; `record` never raises and never blocks on the network."""

    def __init__(
        self,
        store: CachedImageStore,
        metrics: Metrics,
        *,
        flush_interval: float,
        max_pending: int,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._flush_interval = max(flush_interval, 0.05)
        self._max_pending = max_pending
        self._clock = clock
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

    # --- request path -----------------------------------------------------------------

    def record(self, sighting: Sighting) -> None:
        seen = self._timestamp()
        day = seen[:10]
        profile = sighting.profile
        # A cheap key: equal pods build equal dicts in the same order. Profiles that are equal
        # but ordered differently are merged into one when written (merge_profiles).
        try:
            key = orjson.dumps(profile)
        except TypeError:  # deeper than orjson nests (255): rare enough for the slow way
            key = repr(profile).encode()
        images = sighting.images
        dropped = 0
        with self._lock:
            pending = self._pending
            for image in images:
                entry = pending.get(image)
                if entry is None:
                    if len(pending) >= self._max_pending:
                        dropped += 1
                        continue
                    entry = pending[image] = PendingImage()
                entry.add(key, profile, day, seen)
            self._seen_unpublished += len(images) - dropped
        if dropped:
            self._metrics.dropped.inc(dropped)
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

    # --- flushing ---------------------------------------------------------------------

    def flush(self) -> FlushResult:
        """Write everything buffered now; what fails goes back into the buffer."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, {}
            written = failed = 0
            error = ""
            # After a failure to reach the API server (or a 5xx) the rest waits for the next flush.
            abort = False
            leftovers: list[tuple[str, PendingImage]] = []
            for image, entry in batch.items():
                if abort:
                    leftovers.append((image, entry))
                    continue
                try:
                    action = self._write(image, entry)
                except KubeError as exc:
                    failed += 1
                    error = str(exc)
                    self._metrics.flush_errors.labels(reason=_reason(exc)).inc()
                    abort = exc.status == 0 or exc.status >= 500
                    if exc.status in _PERMANENT_STATUSES:
                        log.error(
                            "learning %s: giving up, the API server refuses it: %s",
                            image,
                            exc,
                            extra={"image": image, "reason": _reason(exc)},
                        )
                    else:
                        log.warning(
                            "learning %s failed, retrying on a later flush: %s",
                            image,
                            exc,
                            extra={"image": image, "reason": _reason(exc)},
                        )
                        leftovers.append((image, entry))
                except Exception as exc:  # never let the flusher die
                    failed += 1
                    error = f"unexpected {type(exc).__name__}: {exc}"
                    self._metrics.flush_errors.labels(reason="internal").inc()
                    log.exception(
                        "learning %s failed unexpectedly; retrying later",
                        image,
                        extra={"image": image, "reason": "internal"},
                    )
                    leftovers.append((image, entry))
                    abort = True
                else:
                    written += 1
                    self.reached_api = True
                    self._metrics.images_learned.labels(action=action).inc()
            self._requeue(leftovers)
            self.last_error = error
            return FlushResult(
                written=written, failed=failed, requeued=len(leftovers), last_error=error
            )

    def _requeue(self, leftovers: Iterable[tuple[str, PendingImage]]) -> None:
        dropped = 0
        with self._lock:
            for image, entry in leftovers:
                current = self._pending.get(image)
                if current is not None:
                    current.absorb(entry)
                elif len(self._pending) < self._max_pending:
                    self._pending[image] = entry
                else:
                    dropped += entry.count
        if dropped:
            self._metrics.dropped.inc(dropped)
        self.publish_metrics()

    def _write(self, image: str, entry: PendingImage) -> str:
        """Create or update one CachedImage; returns "created" or "updated"."""
        name = object_name(image)
        created = False
        for _ in range(CONFLICT_RETRIES):
            obj = self._store.get(name)
            if obj is None:
                try:
                    obj = self._store.create(new_cached_image(image, entry.profile_list()))
                    created = True
                except KubeError as exc:
                    if exc.conflict:  # AlreadyExists: another writer won; update theirs
                        self._metrics.conflicts.inc()
                        continue
                    raise
            try:
                updated = learned_spec_update(obj, entry)
                if updated is not None:
                    obj = self._store.replace(updated)
                body = copy.deepcopy(obj)
                body["status"] = usage_status(dict(obj.get("status") or {}), entry, self._clock())
                self._store.replace_status(body)
            except KubeError as exc:
                if exc.conflict:  # stale resourceVersion: read again, merge again
                    self._metrics.conflicts.inc()
                    continue
                raise
            return "created" if created else "updated"
        raise KubeError(
            f"writing CachedImage {name}: still conflicting after {CONFLICT_RETRIES} tries",
            409,
            "Conflict",
        )

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
                if not self.pending:
                    self.publish_metrics()
                    continue
                result = self.flush()
                failures = min(failures + 1, 10) if result.failed else 0
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
        if not self.pending:
            return FlushResult()
        return self.flush()


def _reason(exc: KubeError) -> str:
    if exc.status == 0:
        return "unreachable"
    if exc.conflict:
        return "conflict"
    if exc.status >= 500:
        return "server_error"
    return f"http_{exc.status}"


class KubeCachedImageStore:
    """CachedImageStore over the real `kubernetes` client (CustomObjectsApi)."""

    def __init__(self, api_client: Any, request_timeout: tuple[float, float] = (3.0, 10.0)) -> None:
        from kubernetes import client

        self._api = client.CustomObjectsApi(api_client)
        self._timeout = request_timeout

    def _call(self, what: str, method: Callable[..., Any], *args: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        from imagesync.kubeclient import from_api_exception
        from imagesync.names import CACHED_IMAGE_PLURAL, GROUP, VERSION

        try:
            return method(
                GROUP, VERSION, CACHED_IMAGE_PLURAL, *args, _request_timeout=self._timeout
            )
        except ApiException as exc:
            raise from_api_exception(exc, what) from None
        except (HTTPError, OSError) as exc:
            raise KubeError(f"unreachable: {what}: {exc}", status=0) from None

    def get(self, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self._call(
                f"get CachedImage {name}", self._api.get_cluster_custom_object, name
            )
        except KubeError as exc:
            if exc.not_found:
                return None
            raise
        return result

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        result: dict[str, Any] = self._call(
            f"create CachedImage {name}", self._api.create_cluster_custom_object, body
        )
        return result

    def replace(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        result: dict[str, Any] = self._call(
            f"update CachedImage {name}", self._api.replace_cluster_custom_object, name, body
        )
        return result

    def replace_status(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        result: dict[str, Any] = self._call(
            f"update CachedImage {name} status",
            self._api.replace_cluster_custom_object_status,
            name,
            body,
        )
        return result


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
    )

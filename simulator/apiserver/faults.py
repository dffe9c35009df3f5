"""Fault injection for tests: latency, error answers and dropped watches on chosen requests.

Rules are matched in order against the request path (a regex, `re.search`) and verb (the
Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection — or "*").
An error answer is a `Status` shaped like the real server's: `409` Conflict (what an update
with a stale resourceVersion gets), `422` Invalid (a validation failure, with `causes`),
`429` TooManyRequests and `503` with `Retry-After`, `500` InternalError.
`rate` is a probability drawn from a seeded generator, so a run is reproducible; `times`
bounds how often a rule fires (None: forever). JSON shape, for `POST /sim/faults`:

    {"rules": [{"path": "/api/v1/pods", "verbs": ["list"], "status": 429,
                "retryAfter": 2, "rate": 1.0, "times": 3, "latency": 0.0,
                "dropWatchAfter": null}], "seed": 1}
"""

from __future__ import annotations

import json
import random
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError, conflict, internal, invalid, too_many_requests

STATUSES = (409, 422, 429, 500, 503)


@dataclass(frozen=True)
class FaultTarget:
    """What the request is about, so that a 409 or 422 names it like the real server does."""

    resource: str = ""  # plural, e.g. "pods"
    group: str = ""
    kind: str = ""  # e.g. "Pod"
    name: str = ""  # from the path; on a create, read from `body` when an error needs it
    body: bytes = b""

    def object_name(self) -> str:
        if self.name or not self.body:
            return self.name
        try:
            meta = json.loads(self.body).get("metadata") or {}
        except (ValueError, AttributeError):
            return ""
        return str(meta.get("name") or meta.get("generateName") or "")


@dataclass
class FaultRule:
    path: str = ".*"
    verbs: tuple[str, ...] = ("*",)
    latency: float = 0.0
    status: int | None = None  # 409, 422, 429, 500 or 503
    retry_after: int = 1
    rate: float = 1.0
    times: int | None = None
    drop_watch_after: int | None = None  # end matching watches after N events (0: at once)
    fired: int = 0

    def __post_init__(self) -> None:
        self._regex = re.compile(self.path)

    def applies(self, verb: str, path: str) -> bool:
        if self.times is not None and self.fired >= self.times:
            return False
        return ("*" in self.verbs or verb in self.verbs) and self._regex.search(path) is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "verbs": list(self.verbs),
            "latency": self.latency,
            "status": self.status,
            "retryAfter": self.retry_after,
            "rate": self.rate,
            "times": self.times,
            "dropWatchAfter": self.drop_watch_after,
            "fired": self.fired,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FaultRule:
        verbs = data.get("verbs") or ["*"]
        status = data.get("status")
        if status is not None and int(status) not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(map(str, STATUSES))}")
        return cls(
            path=str(data.get("path") or ".*"),
            verbs=tuple(str(v) for v in verbs),
            latency=float(data.get("latency") or 0.0),
            status=int(status) if status is not None else None,
            retry_after=int(data.get("retryAfter", 1)),
            rate=float(data.get("rate", 1.0)),
            times=int(data["times"]) if data.get("times") is not None else None,
            drop_watch_after=int(data["dropWatchAfter"])
            if data.get("dropWatchAfter") is not None
            else None,
        )


@dataclass(frozen=True)
class Decision:
    latency: float = 0.0
    error: ApiError | None = None
    drop_watch_after: int | None = None


NO_FAULT = Decision()


@dataclass
class Faults:
    """The rule set; thread-safe, replaceable at runtime."""

    rules: list[FaultRule] = field(default_factory=list)
    seed: int = 0
    _rng: random.Random = field(default_factory=random.Random)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def set(self, rules: list[FaultRule], seed: int = 0) -> None:
        with self._lock:
            self.rules = list(rules)
            self.seed = seed
            self._rng = random.Random(seed)

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self.rules.append(rule)

    def clear(self) -> None:
        self.set([])

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {"rules": [r.to_json() for r in self.rules], "seed": self.seed}

    def decide(self, verb: str, path: str, target: FaultTarget | None = None) -> Decision:
        """What to do with one request: latency, an error instead of an answer, a watch cut."""
        latency = 0.0
        error: ApiError | None = None
        drop: int | None = None
        with self._lock:
            for rule in self.rules:
                if not rule.applies(verb, path):
                    continue
                if rule.rate < 1.0 and self._rng.random() >= rule.rate:
                    continue
                rule.fired += 1
                latency += rule.latency
                if rule.status is not None and error is None:
                    error = _error(rule, target or FaultTarget())
                if rule.drop_watch_after is not None and verb == "watch" and drop is None:
                    drop = rule.drop_watch_after
        return Decision(latency, error, drop)


def _error(rule: FaultRule, target: FaultTarget) -> ApiError:
    if rule.status == 409:
        return conflict(
            target.resource,
            target.group,
            target.object_name(),
            "the object has been modified; please apply your changes to the latest version "
            "and try again",
        )
    if rule.status == 422:
        name = target.object_name()
        return invalid(
            target.kind,
            target.group,
            name,
            [("FieldValueInvalid", "metadata.name", f'Invalid value: "{name}": injected fault')],
        )
    if rule.status == 429:
        return too_many_requests(rule.retry_after)
    if rule.status == 503:
        return ApiError(
            503,
            "ServiceUnavailable",
            "injected fault: service unavailable",
            retry_after=rule.retry_after,
        )
    return internal("injected fault")

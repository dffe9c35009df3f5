"""The same API calls sent to two servers, each answer reduced to what must agree: the status
code, the reason (and causes) of an error, and the shape of the body (its keys and their
types, with the values that identify it)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from kubernetes import client
from kubernetes.client.exceptions import ApiException

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
# Values compared as they are (not only their type): they say what the answer is about.
EXACT_KEYS = frozenset({"kind", "apiVersion", "type", "reason", "code", "status", "phase"})
EXACT_MAPS = frozenset({"labels", "annotations", "data"})


class Answer(NamedTuple):
    """One answer: the status code and the reduced body."""

    status: int
    body: Any


def reduce(value: Any, key: str = "") -> Any:
    """The shape of a JSON value: dicts keep their keys, lists their items, other values
    become their type name, except the values named in EXACT_KEYS / EXACT_MAPS."""
    if isinstance(value, dict):
        if key in EXACT_MAPS:
            return dict(sorted(value.items()))
        return {k: reduce(v, k) for k, v in sorted(value.items()) if k != "managedFields"}
    if isinstance(value, list):
        return [reduce(item) for item in value]
    if key in EXACT_KEYS and isinstance(value, str | int) and not isinstance(value, bool):
        return value
    return type(value).__name__


def reduce_status(body: dict[str, Any]) -> dict[str, Any]:
    """An error `Status`: its reason and code, the shape of `details` and each cause's
    reason and field (the messages are worded by each server)."""
    details = body.get("details") or {}
    out: dict[str, Any] = {
        "kind": body.get("kind"),
        "status": body.get("status"),
        "reason": body.get("reason"),
        "code": body.get("code"),
        "details": sorted(k for k in details if k != "causes"),
    }
    if details.get("causes"):
        out["causes"] = sorted(
            (str(c.get("reason", "")), str(c.get("field", ""))) for c in details["causes"]
        )
    return out


def parse(raw: bytes | str | None, watch: bool = False) -> Any:
    text = raw.decode() if isinstance(raw, bytes) else raw or ""
    if watch:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    return json.loads(text) if text.strip() else None


@dataclass
class Recorder:
    """Sends calls through one server's client and keeps every answer under a step name."""

    api: client.ApiClient
    answers: dict[str, Answer] = field(default_factory=dict)

    def send(
        self,
        step: str,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str | None = None,
        query: dict[str, Any] | None = None,
        record: bool = True,
        lagging: Callable[[int, Any], bool] | None = None,
    ) -> Any:
        """The parsed body of the answer (a `Status` for an error); recorded under `step`.
        While `lagging(status, body)` holds (a refusal that only says the server's caches
        have not caught up yet; nothing was created), the call is sent again, up to 30 s."""
        deadline = time.monotonic() + 30
        status, parsed = self._call(method, path, body, content_type, query)
        while lagging is not None and lagging(status, parsed) and time.monotonic() < deadline:
            time.sleep(0.2)
            status, parsed = self._call(method, path, body, content_type, query)
        if record:
            assert step not in self.answers, f"step {step!r} twice"
            watch = bool(query and query.get("watch"))
            self.answers[step] = Answer(status, self._reduced(status, parsed, watch))
        return parsed

    def _call(
        self,
        method: str,
        path: str,
        body: Any,
        content_type: str | None,
        query: dict[str, Any] | None,
    ) -> tuple[int, Any]:
        watch = bool(query and query.get("watch"))
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        method_, url, header_params, data, _ = self.api.param_serialize(
            method,
            path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self.api.call_api(method_, url, header_params, data, _request_timeout=30)
            response.read()
            status, parsed = response.status, parse(response.data, watch)
        except ApiException as exc:  # every answer but 2xx
            status, parsed = exc.status, parse(exc.body)
        return status, parsed

    @staticmethod
    def _reduced(status: int, parsed: Any, watch: bool) -> Any:
        if watch:
            return [(event["type"], reduce(event["object"])) for event in parsed]
        if isinstance(parsed, dict) and parsed.get("kind") == "Status" and status >= 300:
            return reduce_status(parsed)
        return reduce(parsed)


class Difference(NamedTuple):
    step: str
    where: str  # "status" or a dotted path into the reduced body
    simulated: Any
    real: Any


def differences(simulated: dict[str, Answer], real: dict[str, Answer]) -> list[Difference]:
    """Where the two servers' answers disagree, step by step."""
    out: list[Difference] = []
    assert simulated.keys() == real.keys(), simulated.keys() ^ real.keys()
    for step in real:
        sim, k8s = simulated[step], real[step]
        if sim.status != k8s.status:
            out.append(Difference(step, "status", sim.status, k8s.status))
            continue
        out.extend(Difference(step, where, a, b) for where, a, b in _compare(sim.body, k8s.body))
    return out


def _compare(a: Any, b: Any, where: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[tuple[str, Any, Any]] = []
        for key in sorted(a.keys() | b.keys()):
            here = f"{where}.{key}" if where else key
            if key not in a:
                out.append((here, "(missing)", b[key]))
            elif key not in b:
                out.append((here, a[key], "(missing)"))
            else:
                out.extend(_compare(a[key], b[key], here))
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [(f"{where}[len]", len(a), len(b))]
        out = []
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            out.extend(_compare(x, y, f"{where}[{index}]"))
        return out
    return [] if a == b else [(where, a, b)]

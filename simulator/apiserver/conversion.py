"""Conversion between served versions that share storage: `events.k8s.io/v1` Events are
stored as core `v1` Events (as in the real server), so both APIs see the same objects."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

EVENTS_GROUP = "events.k8s.io"

# events.k8s.io/v1 field ↔ core v1 field
_EVENT_FIELDS = (
    ("eventTime", "eventTime"),
    ("series", "series"),
    ("reportingController", "reportingComponent"),
    ("reportingInstance", "reportingInstance"),
    ("action", "action"),
    ("reason", "reason"),
    ("regarding", "involvedObject"),
    ("related", "related"),
    ("note", "message"),
    ("type", "type"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
)


def event_to_storage(obj: Obj) -> Obj:
    """events.k8s.io/v1 Event → the core v1 Event that is stored."""
    out: Obj = {"apiVersion": "v1", "kind": "Event", "metadata": obj.get("metadata") or {}}
    for new, old in _EVENT_FIELDS:
        if obj.get(new) is not None:
            out[old] = obj[new]
    out.setdefault("involvedObject", {})
    return out


def event_from_storage(obj: Obj) -> Obj:
    """Stored core v1 Event → events.k8s.io/v1 Event."""
    out: Obj = {
        "apiVersion": f"{EVENTS_GROUP}/v1",
        "kind": "Event",
        "metadata": obj.get("metadata") or {},
    }
    for new, old in _EVENT_FIELDS:
        if obj.get(old) is not None:
            out[new] = obj[old]
    # Always serialized by the real server's types.
    out.setdefault("eventTime", None)
    out.setdefault("deprecatedSource", {})
    out.setdefault("deprecatedFirstTimestamp", None)
    out.setdefault("deprecatedLastTimestamp", None)
    return out

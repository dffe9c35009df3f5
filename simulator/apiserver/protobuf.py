"""Decoding of the few protobuf request bodies kubectl sends (`kubectl create namespace |
configmap | secret | serviceaccount | priorityclass` and `kubectl drain` use a typed client
that writes `application/vnd.kubernetes.protobuf` and cannot fall back to JSON): those
kinds, DeleteOptions and Eviction. Other protobuf bodies are answered 415."""

from __future__ import annotations

import base64
from typing import Any

from .errors import ApiError, unsupported_media_type

Obj = dict[str, Any]
Schema = dict[int, tuple[str, Any]]

MAGIC = b"k8s\x00"
PROTOBUF = "application/vnd.kubernetes.protobuf"

_TIME: Schema = {1: ("seconds", "int"), 2: ("nanos", "int")}
_OWNER: Schema = {
    1: ("kind", "string"),
    3: ("name", "string"),
    4: ("uid", "string"),
    5: ("apiVersion", "string"),
    6: ("controller", "bool"),
    7: ("blockOwnerDeletion", "bool"),
}
_META: Schema = {
    1: ("name", "string"),
    2: ("generateName", "string"),
    3: ("namespace", "string"),
    5: ("uid", "string"),
    6: ("resourceVersion", "string"),
    7: ("generation", "int"),
    8: ("creationTimestamp", ("time", _TIME)),
    11: ("labels", "map_str"),
    12: ("annotations", "map_str"),
    13: ("ownerReferences", ("rep_msg", _OWNER)),
    14: ("finalizers", "rep_str"),
}
_NAME_REF: Schema = {1: ("name", "string")}
_DELETE_OPTIONS: Schema = {
    1: ("gracePeriodSeconds", "int"),
    2: ("preconditions", ("msg", {1: ("uid", "string"), 2: ("resourceVersion", "string")})),
    3: ("orphanDependents", "bool"),
    4: ("propagationPolicy", "string"),
    5: ("dryRun", "rep_str"),
}
_KINDS: dict[str, Schema] = {
    "Namespace": {
        1: ("metadata", ("msg", _META)),
        2: ("spec", ("msg", {1: ("finalizers", "rep_str")})),
    },
    "ConfigMap": {
        1: ("metadata", ("msg", _META)),
        2: ("data", "map_str"),
        3: ("binaryData", "map_bytes"),
        4: ("immutable", "bool"),
    },
    "Secret": {
        1: ("metadata", ("msg", _META)),
        2: ("data", "map_bytes"),
        3: ("type", "string"),
        4: ("stringData", "map_str"),
        5: ("immutable", "bool"),
    },
    "ServiceAccount": {
        1: ("metadata", ("msg", _META)),
        3: ("imagePullSecrets", ("rep_msg", _NAME_REF)),
        4: ("automountServiceAccountToken", "bool"),
    },
    "DeleteOptions": _DELETE_OPTIONS,
    "Eviction": {1: ("metadata", ("msg", _META)), 2: ("deleteOptions", ("msg", _DELETE_OPTIONS))},
    "PriorityClass": {
        1: ("metadata", ("msg", _META)),
        2: ("value", "int32"),
        3: ("globalDefault", "bool"),
        4: ("description", "string"),
        5: ("preemptionPolicy", "string"),
    },
}


_REVIEWS = {
    "SelfSubjectAccessReview",
    "SubjectAccessReview",
    "SelfSubjectRulesReview",
    "LocalSubjectAccessReview",
    "SelfSubjectReview",
}
BODY_TYPES = "application/json, application/yaml, application/vnd.kubernetes.protobuf"


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            out.append((number, data[pos : pos + length]))
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def _message(data: bytes, schema: Schema) -> Obj:
    obj: Obj = {}
    for number, value in _fields(data):
        if number not in schema:
            continue
        name, kind = schema[number]
        if kind == "string" and isinstance(value, bytes):
            if value:  # proto3: an empty string is an unset field
                obj[name] = value.decode()
        elif kind == "bool":
            obj[name] = bool(value)
        elif kind in ("int", "int32") and isinstance(value, int):
            if kind == "int32" and value >= 1 << 31:
                value -= 1 << 64 if value >= 1 << 32 else 1 << 32
            obj[name] = value
        elif kind == "rep_str" and isinstance(value, bytes):
            obj.setdefault(name, []).append(value.decode())
        elif kind in ("map_str", "map_bytes") and isinstance(value, bytes):
            entry = dict(_fields(value))
            key = entry.get(1, b"")
            val = entry.get(2, b"")
            assert isinstance(key, bytes) and isinstance(val, bytes)
            text = base64.b64encode(val).decode() if kind == "map_bytes" else val.decode()
            obj.setdefault(name, {})[key.decode()] = text
        elif isinstance(kind, tuple) and isinstance(value, bytes):
            if kind[0] == "msg":
                obj[name] = _message(value, kind[1])
            elif kind[0] == "rep_msg":
                obj.setdefault(name, []).append(_message(value, kind[1]))
            elif kind[0] == "time":
                secs = _message(value, kind[1]).get("seconds")
                obj[name] = secs
    return obj


def decode(raw: bytes, content_type: str) -> Obj:
    """The JSON form of a protobuf-encoded object of one of the supported kinds."""
    if not raw.startswith(MAGIC):
        raise unsupported_media_type(content_type, BODY_TYPES)
    try:
        envelope = dict(_fields(raw[len(MAGIC) :]))
        type_meta = envelope.get(1, b"")
        body = envelope.get(2, b"")
        assert isinstance(type_meta, bytes) and isinstance(body, bytes)
        tm = {k: v.decode() for k, v in _fields(type_meta) if isinstance(v, bytes)}
        kind = tm.get(2, "")
        schema = _KINDS.get(kind)
        if kind in _REVIEWS:  # answered without looking at the request: everything is allowed
            return {"apiVersion": tm.get(1, ""), "kind": kind, "metadata": {}, "spec": {}}
        if schema is None:
            raise unsupported_media_type(content_type, BODY_TYPES)
        obj = _message(body, schema)
    except (ValueError, AssertionError, UnicodeDecodeError) as e:
        raise ApiError(400, "BadRequest", f"unable to decode protobuf body: {e}") from e
    if kind != "DeleteOptions":
        meta = obj.get("metadata") or {}
        meta.pop("creationTimestamp", None)
        meta.pop("generation", None)
        obj["metadata"] = meta
    return {"apiVersion": tm.get(1, ""), "kind": kind, **obj}

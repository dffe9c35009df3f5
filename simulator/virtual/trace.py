"""The trace format an admin exports from their cluster to replay it (`image-sync replay`).

JSON lines, one pod per line (blank lines and lines starting with `#` are skipped):

    {"time": 0, "namespace": "ml", "owner": "Job/train", "images": ["nvcr.io/nvidia/pytorch:24.08-py3"],
     "nodeSelector": {"nvidia.com/gpu.present": "true"}, "tolerations": [], "gpus": 4,
     "cpu": "16", "memory": "128Gi", "duration": 1500}

- `time` (required): seconds from the start of the trace, or an RFC 3339 timestamp (then
  counted from the earliest line);
- `image` or `images` (required): the pod's container images, in order;
- `namespace` (default `default`), `name` (default: from the owner and the line number),
  `owner` (`Kind/name`, e.g. `ReplicaSet/web-7d9f`, `Job/train`; empty for a bare pod);
- placement: `nodeSelector`, `tolerations` (as in a pod spec), `gpus` (nvidia.com/gpu count;
  the GPU toleration is added as the ExtendedResourceToleration plugin does), `cpu`, `memory`
  (quantities as in a pod spec);
- `duration`: seconds the pod runs once started; `null` or absent: until the end of the replay;
- `imagePullPolicy` (optional): `Always`, `IfNotPresent` or `Never`.

CSV with a header row is read too (`.csv`): the same names as columns, `images` separated by
spaces, `nodeSelector` as `key=value` pairs separated by `;`, no tolerations column beyond
what `gpus` implies.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from simulator.scheduling import parse_quantity
from simulator.virtual.pods import PodSpec
from simulator.virtual.workload import GPU_TOLERATION, normalized

POLICIES = ("Always", "IfNotPresent", "Never")


class TraceError(ValueError):
    """A trace that cannot be replayed; the message names the line."""


def _time(value: Any) -> float | datetime:
    if isinstance(value, bool) or value is None:
        raise ValueError("`time` is required: seconds or an RFC 3339 timestamp")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"`time` must not be negative, got {value}")
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"`time` must be seconds or an RFC 3339 timestamp, got {text!r}") from None
    if moment.tzinfo is None:
        raise ValueError(f"`time` {text!r} needs a time zone (e.g. a trailing Z)")
    return moment


def _quantity(record: Mapping[str, Any], key: str, default: str) -> float:
    value = record.get(key)
    try:
        return parse_quantity(default if value in (None, "") else value)
    except ValueError:
        raise ValueError(f"`{key}` is not a quantity: {value!r}") from None


def _pod(record: Mapping[str, Any], line: int) -> tuple[float | datetime, PodSpec]:
    if not isinstance(record, Mapping):
        raise ValueError("expected a JSON object")
    when = _time(record.get("time"))
    raw_images = record.get("images") if record.get("images") is not None else record.get("image")
    if isinstance(raw_images, str):
        raw_images = raw_images.split()
    if not raw_images or not isinstance(raw_images, list):
        raise ValueError("give `image` or `images` (a list of image references)")
    images = tuple(normalized(str(i)) for i in raw_images)
    owner = str(record.get("owner") or "")
    owner_kind, _, owner_name = owner.rpartition("/") if "/" in owner else ("", "", owner)
    selector = record.get("nodeSelector") or {}
    if isinstance(selector, str):
        selector = dict(pair.split("=", 1) for pair in selector.split(";") if "=" in pair)
    if not isinstance(selector, Mapping):
        raise ValueError("`nodeSelector` must be an object of label: value")
    tolerations = record.get("tolerations") or []
    if not isinstance(tolerations, list) or not all(isinstance(t, Mapping) for t in tolerations):
        raise ValueError("`tolerations` must be a list of objects")
    gpus = int(record.get("gpus") or 0)
    if gpus < 0:
        raise ValueError(f"`gpus` must not be negative, got {gpus}")
    toleration_list = [dict(t) for t in tolerations]
    if gpus and GPU_TOLERATION not in toleration_list:
        toleration_list.append(dict(GPU_TOLERATION))
    duration = record.get("duration")
    if duration in (None, ""):
        seconds: float | None = None
    else:
        seconds = float(duration)
        if seconds < 0:
            raise ValueError(f"`duration` must not be negative, got {duration}")
    policy = record.get("imagePullPolicy") or None
    if policy is not None and policy not in POLICIES:
        raise ValueError(f"`imagePullPolicy` must be one of {', '.join(POLICIES)}, not {policy!r}")
    namespace = str(record.get("namespace") or "default")
    name = str(record.get("name") or f"{owner_name or 'pod'}-{line}")
    return when, PodSpec(
        at=0.0,
        namespace=namespace,
        name=name,
        images=images,
        owner_kind=owner_kind,
        owner=owner_name,
        node_selector={str(k): str(v) for k, v in selector.items()},
        tolerations=tuple(toleration_list),
        gpus=gpus,
        cpu=_quantity(record, "cpu", "100m"),
        memory=_quantity(record, "memory", "128Mi"),
        duration=seconds,
        pull_policy=policy,
    )


def _records(text: str, csv_format: bool) -> Iterable[tuple[int, Any]]:
    if csv_format:
        reader = csv.DictReader(io.StringIO(text))
        for number, row in enumerate(reader, start=2):
            yield number, {k: v for k, v in row.items() if k is not None and v not in (None, "")}
        return
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            yield number, json.loads(stripped)
        except json.JSONDecodeError as exc:
            yield number, ValueError(f"not valid JSON: {exc.msg} (column {exc.colno})")


def parse_trace(text: str, name: str = "trace", *, csv_format: bool = False) -> list[PodSpec]:
    """The pods of a trace, in time order; a bad line raises TraceError naming it."""
    parsed: list[tuple[float | datetime, int, PodSpec]] = []
    for number, record in _records(text, csv_format):
        try:
            if isinstance(record, ValueError):
                raise record
            when, pod = _pod(record, number)
        except (ValueError, TypeError) as exc:
            raise TraceError(f"{name}:{number}: {exc}") from None
        parsed.append((when, number, pod))
    if not parsed:
        raise TraceError(f"{name}: no pods in the trace")
    kinds = {isinstance(when, datetime) for when, _, _ in parsed}
    if len(kinds) > 1:
        raise TraceError(f"{name}: mixes seconds and timestamps in `time`; use one of them")
    if kinds == {True}:
        start = min(when for when, _, _ in parsed if isinstance(when, datetime))
        times = [
            (w - start).total_seconds() if isinstance(w, datetime) else w for w, _, _ in parsed
        ]
    else:
        times = [float(w) for w, _, _ in parsed if not isinstance(w, datetime)]
    pods = [replace(pod, at=at) for (_, _, pod), at in zip(parsed, times, strict=True)]
    seen: dict[str, int] = {}
    for index, pod in enumerate(pods):
        count = seen.get(pod.key, 0)
        seen[pod.key] = count + 1
        if count:
            pods[index] = replace(pod, name=f"{pod.name}-{count + 1}")
    return sorted(pods, key=lambda p: p.at)


def load_trace(path: str | Path) -> list[PodSpec]:
    """Read a trace file (`.csv` as CSV, anything else as JSON lines)."""
    target = Path(path)
    try:
        text = target.read_text()
    except OSError as exc:
        raise TraceError(f"{target}: cannot read: {exc.strerror}") from None
    return parse_trace(text, str(target), csv_format=target.suffix.lower() == ".csv")


def trace_lines(pods: Sequence[PodSpec]) -> list[str]:
    """Pods as trace lines (the format above), e.g. to export a generated workload."""
    lines = []
    for pod in pods:
        record: dict[str, Any] = {"time": round(pod.at, 3), "namespace": pod.namespace}
        record["name"] = pod.name
        if pod.owner:
            record["owner"] = f"{pod.owner_kind}/{pod.owner}" if pod.owner_kind else pod.owner
        record["images"] = list(pod.images)
        if pod.node_selector:
            record["nodeSelector"] = dict(pod.node_selector)
        extra = [dict(t) for t in pod.tolerations if dict(t) != GPU_TOLERATION]
        if extra:
            record["tolerations"] = extra
        if pod.gpus:
            record["gpus"] = pod.gpus
        record["cpu"] = f"{pod.cpu:g}"
        record["memory"] = str(int(pod.memory))
        record["duration"] = pod.duration
        if pod.pull_policy:
            record["imagePullPolicy"] = pod.pull_policy
        lines.append(json.dumps(record, separators=(",", ":")))
    return lines

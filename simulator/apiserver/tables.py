"""Server-side printing (`meta.k8s.io/v1` Table), which `kubectl get` asks for."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .resources import ResourceDef

Obj = dict[str, Any]

TABLE_MARKER = "as=Table"


def wants_table(accept: str) -> bool:
    return TABLE_MARKER in accept and "g=meta.k8s.io" in accept


def wants_metadata(accept: str) -> bool:
    """`as=PartialObjectMetadata[List]`: the metadata-only form metadata informers ask for."""
    return "as=PartialObjectMetadata" in accept and "g=meta.k8s.io" in accept


def partial(obj: Obj) -> Obj:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata") or {},
    }


def partial_list(listed: Obj) -> Obj:
    return {
        "kind": "PartialObjectMetadataList",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": listed["metadata"],
        "items": [partial(o) for o in listed["items"]],
    }


def _age(ts: str | None, now: float) -> str:
    if not ts:
        return "<unknown>"
    try:
        then = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return "<unknown>"
    secs = max(0, int(now - then))
    if secs < 120:
        return f"{secs}s"
    if secs < 7200:
        return f"{secs // 60}m"
    if secs < 172800:
        return f"{secs // 3600}h"
    return f"{secs // 86400}d"


def _container_reason(statuses: list[Obj]) -> tuple[str, bool]:
    """The STATUS kubectl derives from container states (last container first), and whether
    a ready container is running."""
    reason, running = "", False
    for s in reversed(statuses):
        state = s.get("state") or {}
        waiting, terminated = state.get("waiting"), state.get("terminated")
        if waiting and waiting.get("reason"):
            reason = str(waiting["reason"])
        elif terminated and terminated.get("reason"):
            reason = str(terminated["reason"])
        elif terminated:
            signal = terminated.get("signal")
            reason = f"Signal:{signal}" if signal else f"ExitCode:{terminated.get('exitCode', 0)}"
        elif s.get("ready") and "running" in state:
            running = True
    return reason, running


def _init_reason(spec: Obj, statuses: list[Obj]) -> str:
    total = len(spec.get("initContainers") or [])
    for i, s in enumerate(statuses):
        state = s.get("state") or {}
        terminated, waiting = state.get("terminated"), state.get("waiting")
        if terminated and terminated.get("exitCode") == 0:
            continue
        if terminated:
            return "Init:" + str(
                terminated.get("reason") or f"ExitCode:{terminated.get('exitCode')}"
            )
        if waiting and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            return "Init:" + str(waiting["reason"])
        return f"Init:{i}/{total}"
    return ""


def _pod_cells(obj: Obj) -> list[Any]:
    """READY, STATUS, RESTARTS, IP and NODE, computed the way kubectl's printer does."""
    status = obj.get("status") or {}
    spec = obj.get("spec") or {}
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    restarts = sum(int(s.get("restartCount", 0)) for s in statuses)
    reason = str(status.get("reason") or status.get("phase") or "Pending")
    init = _init_reason(spec, status.get("initContainerStatuses") or [])
    if init:
        reason = init
    else:
        from_containers, running = _container_reason(statuses)
        reason = from_containers or reason
        if reason == "Completed" and running:
            conds = status.get("conditions") or []
            is_ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)
            reason = "Running" if is_ready else "NotReady"
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Unknown" if status.get("reason") == "NodeLost" else "Terminating"
    ip = status.get("podIP") or "<none>"
    node = spec.get("nodeName") or "<none>"
    return [f"{ready}/{len(spec.get('containers') or [])}", reason, restarts, ip, node]


def _node_cells(obj: Obj) -> list[Any]:
    """STATUS, ROLES, VERSION, then the -o wide INTERNAL-IP, EXTERNAL-IP, OS-IMAGE,
    KERNEL-VERSION, CONTAINER-RUNTIME."""
    status_obj = obj.get("status") or {}
    conds = status_obj.get("conditions") or []
    ready = next((c for c in conds if c.get("type") == "Ready"), None)
    status = (
        "Ready" if ready and ready.get("status") == "True" else ("NotReady" if ready else "Unknown")
    )
    if (obj.get("spec") or {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    labels = (obj.get("metadata") or {}).get("labels") or {}
    roles = (
        ",".join(
            sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
        )
        or "<none>"
    )
    info = status_obj.get("nodeInfo") or {}
    addresses = status_obj.get("addresses") or []
    internal = next((a.get("address") for a in addresses if a.get("type") == "InternalIP"), None)
    external = next((a.get("address") for a in addresses if a.get("type") == "ExternalIP"), None)
    return [
        status,
        roles,
        info.get("kubeletVersion", ""),
        internal or "<none>",
        external or "<none>",
        info.get("osImage") or "<unknown>",
        info.get("kernelVersion") or "<unknown>",
        info.get("containerRuntimeVersion") or "<unknown>",
    ]


def _event_cells(obj: Obj, now: float) -> list[Any]:
    """LAST SEEN, TYPE, REASON, OBJECT, MESSAGE of core and events.k8s.io Events."""
    regarding = obj.get("involvedObject") or obj.get("regarding") or {}
    last = (
        obj.get("lastTimestamp")
        or obj.get("deprecatedLastTimestamp")
        or (obj.get("series") or {}).get("lastObservedTime")
        or obj.get("eventTime")
        or (obj.get("metadata") or {}).get("creationTimestamp")
    )
    kind = str(regarding.get("kind", "")).lower()
    return [
        _age(str(last)[:19] + "Z" if last else None, now),
        obj.get("type", ""),
        obj.get("reason", ""),
        f"{kind}/{regarding.get('name', '')}",
        obj.get("message") or obj.get("note") or "",
    ]


def _jsonpath(obj: Obj, path: str) -> Any:
    cur: Any = obj
    for part in path.strip(".").split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


Cell = Callable[[Obj, float], Any]


def _name(obj: Obj, now: float) -> Any:
    return (obj.get("metadata") or {}).get("name", "")


def _created(obj: Obj, now: float) -> Any:
    return _age((obj.get("metadata") or {}).get("creationTimestamp"), now)


def _nth(fn: Callable[[Obj], list[Any]], i: int) -> Cell:
    return lambda obj, now: fn(obj)[i]


def _event_nth(i: int) -> Cell:
    return lambda obj, now: _event_cells(obj, now)[i]


Spec = tuple[str, str, int, Cell]


def _specs(rd: ResourceDef) -> list[Spec]:
    """(column, type, priority, cell) per kind, in kubectl's order; priority 1 is -o wide."""
    name: Spec = ("Name", "string", 0, _name)
    age: Spec = ("Age", "string", 0, _created)
    if rd.custom:
        extra: list[Spec] = [
            (
                str(c.get("name")),
                str(c.get("type", "string")),
                int(c.get("priority", 0)),
                _path(str(c.get("jsonPath", ""))),
            )
            for c in rd.printer_columns
            if str(c.get("jsonPath")) != ".metadata.creationTimestamp"
        ]
        return [name, *extra, age]
    if rd.kind == "Pod":
        return [
            name,
            ("Ready", "string", 0, _nth(_pod_cells, 0)),
            ("Status", "string", 0, _nth(_pod_cells, 1)),
            ("Restarts", "integer", 0, _nth(_pod_cells, 2)),
            age,
            ("IP", "string", 1, _nth(_pod_cells, 3)),
            ("Node", "string", 1, _nth(_pod_cells, 4)),
        ]
    if rd.kind == "Node":
        heads = ["Status", "Roles", "Version", "Internal-IP", "External-IP", "OS-Image"]
        heads += ["Kernel-Version", "Container-Runtime"]
        node = [(h, "string", 0 if i < 3 else 1, _nth(_node_cells, i)) for i, h in enumerate(heads)]
        return [name, *node[:2], age, *node[2:]]
    if rd.kind == "Event":
        heads = ["Last Seen", "Type", "Reason", "Object", "Message"]
        return [
            *[(h, "string", 0, _event_nth(i)) for i, h in enumerate(heads)],
            ("Name", "string", 1, _name),
        ]
    if rd.kind == "Namespace":
        phase: Spec = (
            "Status",
            "string",
            0,
            lambda o, now: (o.get("status") or {}).get("phase", ""),
        )
        return [name, phase, age]
    return [name, age]


def _path(path: str) -> Cell:
    return lambda obj, now: _jsonpath(obj, path)


def columns(rd: ResourceDef) -> list[Obj]:
    return [
        {
            "name": n,
            "type": t,
            "format": "name" if n == "Name" else "",
            "description": n,
            "priority": p,
        }
        for n, t, p, _ in _specs(rd)
    ]


def row(rd: ResourceDef, obj: Obj, now: float) -> Obj:
    cells = [fn(obj, now) for _, _, _, fn in _specs(rd)]
    return {"cells": cells, "object": partial(obj)}


def table(
    rd: ResourceDef, objs: list[Obj], list_meta: Obj, now: float, with_columns: bool = True
) -> Obj:
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": columns(rd) if with_columns else [],
        "rows": [row(rd, o, now) for o in objs],
    }

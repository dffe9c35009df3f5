"""Pod disruption budgets, computed when an eviction asks (the simulator has no disruption
controller writing PDB status, so the budget is worked out from the pods at that moment)."""

from __future__ import annotations

import math
from typing import Any

from .selectors import match_label_selector_object

Obj = dict[str, Any]


def _ready(pod: Obj) -> bool:
    conds = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def _scaled(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        frac = int(value[:-1]) * total / 100
        return math.ceil(frac) if round_up else math.floor(frac)
    return int(value)


def blocking_budget(pod: Obj, pdbs: list[Obj], pods: list[Obj]) -> str | None:
    """The name of a PDB that this eviction would violate, if any."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    if not _ready(pod):
        return None  # unhealthy pods may always be evicted
    for pdb in pdbs:
        spec = pdb.get("spec") or {}
        selector = spec.get("selector")
        if selector is None or not match_label_selector_object(selector, labels):
            continue
        covered = [
            p
            for p in pods
            if match_label_selector_object(selector, (p.get("metadata") or {}).get("labels"))
            and not (p.get("metadata") or {}).get("deletionTimestamp")
        ]
        expected = len(covered)
        healthy = sum(1 for p in covered if _ready(p))
        if spec.get("minAvailable") is not None:
            desired = _scaled(spec["minAvailable"], expected, round_up=True)
        elif spec.get("maxUnavailable") is not None:
            desired = expected - _scaled(spec["maxUnavailable"], expected, round_up=True)
        else:
            continue
        if healthy - desired <= 0:
            return str(pdb["metadata"]["name"])
    return None

"""A pod's effective resource requests, as kube-scheduler's NodeResourcesFit filter adds them up.

kube-scheduler never places a pod on a node whose allocatable is below the pod's request, so
an image is worth copying only to nodes that could hold at least one of its pods. A placement
profile keeps the requests of the pods it stands for (`requests`), and the prefetcher holds
them against each node's allocatable.

The arithmetic is kube-scheduler's (`resourcehelper.PodRequests`):

- a container's request of a resource defaults to its limit when only the limit is set (the
  API server's defaulting, which pod templates have not been through yet);
- regular containers add up; a sidecar (an init container with `restartPolicy: Always`)
  runs beside them and adds too; a plain init container runs alone, beside the sidecars
  started before it, so the pod needs the larger of the two;
- pod-level `spec.resources` (cpu, memory, hugepages) replace the containers' sum;
- `spec.overhead` (the RuntimeClass' cost) comes on top.

Quantities are kept as canonical strings (`500m`, `8`, `256Gi`) so equal requests are equal
text in a CachedImage; zero requests are left out, as the scheduler ignores them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from decimal import ROUND_CEILING, Decimal
from typing import Any

from kubernetes.utils.quantity import parse_quantity as kube_quantity

Requests = dict[str, str]
"""Resource name → canonical quantity."""

SIDECAR_RESTART_POLICY = "Always"
# Resources pod-level `spec.resources` may set (the rest still come from the containers).
POD_LEVEL_RESOURCES = ("cpu", "memory")
POD_LEVEL_PREFIXES = ("hugepages-",)
# Binary suffixes a canonical quantity uses for whole multiples (below 1Mi: plain digits, so
# counts such as cpus or GPUs never read "1Ki").
_BINARY_SUFFIXES = (("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20))


def quantity(value: Any) -> Decimal | None:
    """A Kubernetes quantity as an exact Decimal; None when unreadable or negative."""
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = kube_quantity(value if isinstance(value, int | float) else str(value).strip())
    except (ValueError, ArithmeticError):
        return None
    return amount if amount.is_finite() and amount >= 0 else None


def format_quantity(amount: Decimal) -> str:
    """The canonical text of a quantity: whole binary multiples from 1Mi, other integers as
    digits, fractions in thousandths rounded up (`1500m`), as the API server rounds them."""
    if amount == amount.to_integral_value():
        whole = int(amount)
        for suffix, factor in _BINARY_SUFFIXES:
            if whole >= factor and whole % factor == 0:
                return f"{whole // factor}{suffix}"
        return str(whole)
    return f"{int((amount * 1000).to_integral_value(rounding=ROUND_CEILING))}m"


@functools.lru_cache(maxsize=4096)
def request_amount(text: str) -> float | None:
    """A stored request as a number (remembered: every node of a pass compares the same few)."""
    amount = quantity(text)
    return float(amount) if amount is not None else None


def _amounts(resources: Any) -> dict[str, Decimal]:
    """Requests of a `resources` block: each request, or the limit when only that is set."""
    if not isinstance(resources, Mapping):
        return {}
    out: dict[str, Decimal] = {}
    for section in ("limits", "requests"):  # requests override the limits they default from
        entries = resources.get(section)
        if not isinstance(entries, Mapping):
            continue
        for name, value in entries.items():
            amount = quantity(value)
            if amount is not None:
                out[str(name)] = amount
    return out


def _add(total: dict[str, Decimal], more: Mapping[str, Decimal]) -> None:
    for name, amount in more.items():
        total[name] = total.get(name, Decimal(0)) + amount


def _raise_to(total: dict[str, Decimal], floor: Mapping[str, Decimal]) -> None:
    for name, amount in floor.items():
        if amount > total.get(name, Decimal(0)):
            total[name] = amount


def _containers(spec: Mapping[str, Any], section: str) -> Iterable[Mapping[str, Any]]:
    containers = spec.get(section)
    if not isinstance(containers, list):
        return ()
    return (c for c in containers if isinstance(c, Mapping))


def pod_request_amounts(spec: Mapping[str, Any]) -> dict[str, Decimal]:
    """The effective requests of a pod spec, exactly (see the module)."""
    total: dict[str, Decimal] = {}
    for container in _containers(spec, "containers"):
        _add(total, _amounts(container.get("resources")))
    sidecars: dict[str, Decimal] = {}
    init_peak: dict[str, Decimal] = {}
    for container in _containers(spec, "initContainers"):
        own = _amounts(container.get("resources"))
        if container.get("restartPolicy") == SIDECAR_RESTART_POLICY:
            _add(total, own)
            _add(sidecars, own)
            _raise_to(init_peak, sidecars)
        else:
            alone = dict(own)
            _add(alone, sidecars)
            _raise_to(init_peak, alone)
    _raise_to(total, init_peak)
    for name, amount in _amounts(spec.get("resources")).items():
        if name in POD_LEVEL_RESOURCES or name.startswith(POD_LEVEL_PREFIXES):
            total[name] = amount
    overhead = spec.get("overhead")
    if isinstance(overhead, Mapping):
        _add(total, _amounts({"requests": overhead}))
    return {name: amount for name, amount in total.items() if amount > 0}


def pod_requests(spec: Mapping[str, Any]) -> Requests:
    """The effective requests of a pod spec as canonical quantities, by resource name."""
    return {
        name: format_quantity(amount) for name, amount in sorted(pod_request_amounts(spec).items())
    }


def smaller_requests(first: Mapping[str, str], second: Mapping[str, str]) -> Requests:
    """Per resource the smaller of two requests: what the smaller pod of either kind needs (a
    resource one of them does not request is needed by neither)."""
    out: Requests = {}
    for name in sorted(first.keys() & second.keys()):
        a, b = quantity(first[name]), quantity(second[name])
        if a is None or b is None:
            continue
        out[name] = first[name] if a <= b else second[name]
    return out

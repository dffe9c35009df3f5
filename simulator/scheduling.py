"""The scheduler's predicates and scores as pure functions over Pod and Node JSON.

The rules follow kube-scheduler's default filter plugins (NodeUnschedulable, TaintToleration,
NodeAffinity, NodeResourcesFit) and the ImageLocality score, with the same failure texts, so
an unschedulable pod explains itself the way it would on a real cluster. The prefetcher and
tests may use `node_matches` to ask "could this pod run on that node?".
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from imagesync.reference import InvalidReference, normalize
from simulator.scoring import DEFAULT_SCORING, ScoringStrategy, resource_fit_score

JSON = dict[str, Any]

_QUANTITY_RE = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")
_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"


def parse_quantity(value: Any) -> float:
    """A resource quantity (`500m`, `2Gi`, `1e3`, 4) as a float."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _QUANTITY_RE.match(str(value).strip())
    if not match or match.group(2) not in _SUFFIX:
        raise ValueError(f"invalid quantity {value!r}")
    return float(Decimal(match.group(1)) * _SUFFIX[match.group(2)])


def _container_requests(container: Mapping[str, Any]) -> dict[str, float]:
    resources = container.get("resources") or {}
    # The API server defaults requests to limits when only limits are given.
    merged = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
    return {name: parse_quantity(value) for name, value in merged.items()}


def pod_requests(pod: Mapping[str, Any]) -> dict[str, float]:
    """Effective requests: sum over containers, at least the largest init container's."""
    spec = pod.get("spec") or {}
    total: dict[str, float] = {}
    for container in spec.get("containers") or []:
        for name, value in _container_requests(container).items():
            total[name] = total.get(name, 0.0) + value
    for container in spec.get("initContainers") or []:
        for name, value in _container_requests(container).items():
            total[name] = max(total.get(name, 0.0), value)
    total["pods"] = 1.0
    return total


def allocatable(node: Mapping[str, Any]) -> dict[str, float]:
    status = node.get("status") or {}
    raw = status.get("allocatable") or status.get("capacity") or {}
    return {name: parse_quantity(value) for name, value in raw.items()}


def tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    """True when some toleration matches the taint (key, value, effect) as the API defines."""
    for toleration in tolerations:
        effect = toleration.get("effect") or ""
        if effect and effect != taint.get("effect"):
            continue
        key = toleration.get("key") or ""
        operator = toleration.get("operator") or "Equal"
        if key and key != taint.get("key"):
            continue
        if operator == "Exists":
            return True
        if (
            operator == "Equal"
            and key
            and (toleration.get("value") or "") == (taint.get("value") or "")
        ):
            return True
    return False


def _untolerated_taint(pod: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any] | None:
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") not in ("NoSchedule", "NoExecute"):
            continue
        if not tolerates(tolerations, taint):
            found: Mapping[str, Any] = taint
            return found
    return None


def _requirement_matches(requirement: Mapping[str, Any], values: Mapping[str, str]) -> bool:
    key = requirement.get("key", "")
    operator = requirement.get("operator", "")
    wanted = [str(v) for v in requirement.get("values") or []]
    present = key in values
    value = values.get(key)
    if operator == "In":
        return present and value in wanted
    if operator == "NotIn":
        return not present or value not in wanted
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt"):
        if not present or len(wanted) != 1:
            return False
        try:
            have, limit = int(str(value)), int(wanted[0])
        except ValueError:
            return False
        return have > limit if operator == "Gt" else have < limit
    return False


def _term_matches(term: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False  # an empty term matches no objects
    labels = (node.get("metadata") or {}).get("labels") or {}
    field_values = {"metadata.name": (node.get("metadata") or {}).get("name", "")}
    return all(_requirement_matches(r, labels) for r in expressions) and all(
        _requirement_matches(r, field_values) for r in fields
    )


def node_affinity_matches(pod: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """nodeSelector and required node affinity (terms ORed, expressions ANDed)."""
    spec = pod.get("spec") or {}
    labels = (node.get("metadata") or {}).get("labels") or {}
    for key, value in (spec.get("nodeSelector") or {}).items():
        if labels.get(key) != value:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or None
    if required is None:
        return True
    return any(_term_matches(term, node) for term in required.get("nodeSelectorTerms") or [])


def insufficient(requests: Mapping[str, float], free: Mapping[str, float]) -> list[str]:
    """Resources the pod asks for beyond what the node has left, as `Insufficient cpu` etc."""
    reasons = []
    for name, amount in requests.items():
        if amount <= 0:
            continue
        if amount > free.get(name, 0.0) + 1e-9:
            reasons.append("Too many pods" if name == "pods" else f"Insufficient {name}")
    return sorted(reasons)


def filter_node(
    pod: Mapping[str, Any],
    node: Mapping[str, Any],
    free: Mapping[str, float] | None = None,
) -> list[str]:
    """Why `pod` cannot go to `node` (empty: it can); the first failing filter, like the scheduler.

    `free` is what is left of the node's allocatable; None skips the resource check.
    """
    spec = node.get("spec") or {}
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    if spec.get("unschedulable") and not tolerates(
        tolerations, {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}
    ):
        return ["node(s) were unschedulable"]
    taint = _untolerated_taint(pod, node)
    if taint is not None:
        return [
            f"node(s) had untolerated taint {{{taint.get('key', '')}: {taint.get('value', '')}}}"
        ]
    if not node_affinity_matches(pod, node):
        return ["node(s) didn't match Pod's node affinity/selector"]
    if free is not None:
        return insufficient(pod_requests(pod), free)
    return []


def node_matches(pod: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """Whether the pod could ever be placed on the node, ignoring what already runs there."""
    return not filter_node(pod, node, None)


def unschedulable_message(total_nodes: int, reasons: Counter[str]) -> str:
    """The PodScheduled=False message kube-scheduler writes."""
    parts = ", ".join(f"{count} {reason}" for reason, count in sorted(reasons.items()))
    head = f"0/{total_nodes} nodes are available"
    head = f"{head}: {parts}." if parts else f"{head}."
    return (
        f"{head} preemption: 0/{total_nodes} nodes are available: "
        f"{total_nodes} Preemption is not helpful for scheduling."
    )


@dataclass(frozen=True, slots=True)
class Decision:
    """Where a pod goes (`node`), or why it cannot go anywhere (`message`)."""

    node: str | None
    message: str = ""


def _image_names(node: Mapping[str, Any]) -> dict[str, int]:
    names: dict[str, int] = {}
    for image in (node.get("status") or {}).get("images") or []:
        for name in image.get("names") or []:
            names[name] = int(image.get("sizeBytes") or 0)
    return names


def _normalized(image: str) -> str:
    try:
        return normalize(image)
    except InvalidReference:
        return image


def schedule(
    pod: Mapping[str, Any],
    nodes: Sequence[Mapping[str, Any]],
    used: Mapping[str, Mapping[str, float]],
    scoring: ScoringStrategy = DEFAULT_SCORING,
) -> Decision:
    """Pick a node: filters first, then NodeResourcesFit (`scoring`: least-allocated by
    default) plus image-locality scores; name breaks ties.

    `used` maps node name to the summed requests of the pods already assigned there.
    """
    requests = pod_requests(pod)
    reasons: Counter[str] = Counter()
    feasible: list[tuple[Mapping[str, Any], dict[str, float]]] = []
    for node in nodes:
        name = (node.get("metadata") or {}).get("name", "")
        alloc = allocatable(node)
        taken = used.get(name, {})
        free = {key: value - taken.get(key, 0.0) for key, value in alloc.items()}
        failures = filter_node(pod, node, free)
        if failures:
            reasons.update(failures)
        else:
            feasible.append((node, free))
    if not feasible:
        return Decision(None, unschedulable_message(len(nodes), reasons))

    images = [
        _normalized(c.get("image", "")) for c in (pod.get("spec") or {}).get("containers") or []
    ]
    spread: Counter[str] = Counter()
    node_images = {}
    for node, _ in feasible:
        name = node["metadata"]["name"]
        node_images[name] = _image_names(node)
        for image in images:
            if image in node_images[name]:
                spread[image] += 1

    def score(entry: tuple[Mapping[str, Any], dict[str, float]]) -> tuple[float, str]:
        node, free = entry
        name = node["metadata"]["name"]
        fit = resource_fit_score(scoring, free, allocatable(node), requests)
        total = sum(
            node_images[name][image] * spread[image] / len(feasible)
            for image in images
            if image in node_images[name]
        )
        low, high = 23 * 1024 * 1024, 1000 * 1024 * 1024 * max(1, len(images))
        locality = 100.0 * min(max(total - low, 0), high - low) / (high - low)
        return (-(fit + locality), name)

    best = min(feasible, key=score)[0]
    return Decision(best["metadata"]["name"])

"""Which nodes may run an image: node health, then the prediction from how its pods were placed.

Two questions, each answered with None (yes) or a reason a person can read:

- `node_problem`: is the node usable at all (Ready, not cordoned when `schedulable_only`,
  no DiskPressure, Linux)?
- `placement_problem`: could any pod that used the image have been scheduled here? The
  image's declared nodeSelector must match, its architecture (when known) must fit, and
  at least one placement profile must fit: nodeSelector, required node affinity (In, NotIn,
  Exists, DoesNotExist, Gt, Lt; matchFields metadata.name), tolerations against the node's
  NoSchedule/NoExecute taints, a GPU request only on GPU nodes, and the pods' effective
  requests within the node's allocatable (kube-scheduler's NodeResourcesFit filter: a pod
  asking for 8 GPUs never runs on a 4-GPU node, however idle). An image used only by GPU
  pods never lands on CPU nodes. No profiles (a declared image) means any node.

Requests are held against allocatable, not against what is free: pods come and go, and the
image is for the pods that will come. A resource the node does not report at all (a device
plugin not registered yet on a node that just joined) is not held against it, nor is any
request of a profile written before requests were learned: both keep the older rule.

Taints that Kubernetes itself manages for node health (not-ready, unreachable,
unschedulable) and the startup taint are left out of the prediction: readiness and
cordoning are answered by `node_problem`, and the startup taint exists to be removed.

Control-plane nodes (role label `node-role.kubernetes.io/control-plane`) hold only images
whose placement says so: a profile whose pods tolerate the control-plane taint or select
the role label, or a declared nodeSelector on it. Puller and keeper pods are bound to their
node, past the scheduler, so nothing else would keep them off a control-plane node whose
taint a cluster left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from imagesync.cachedimage import PlacementProfile, Toleration
from imagesync.config import Config
from imagesync.names import GPU_PRESENT_LABEL, GPU_RESOURCE
from imagesync.resources import request_amount
from prefetcher.model import NodeInfo, Taint, WantedImage

HEALTH_TAINTS = frozenset(
    {
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/unschedulable",
    }
)
BLOCKING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})
CONTROL_PLANE_ROLES = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
BYTE_RESOURCES = ("memory", "ephemeral-storage", "hugepages-")
BINARY_UNITS = (("Ti", 2.0**40), ("Gi", 2.0**30), ("Mi", 2.0**20), ("Ki", 2.0**10))


def node_problem(node: NodeInfo, config: Config) -> str | None:
    """Why nothing should be pulled to `node` now, or None."""
    if not node.ready:
        return "node is not Ready"
    if node.unschedulable and config.schedulable_only:
        return "node is cordoned"
    if node.disk_pressure:
        return "node reports DiskPressure"
    if node.os and node.os.lower() != "linux":
        return f"node runs {node.os}, not Linux"
    return None


def has_gpu(node: NodeInfo) -> bool:
    """GPU allocatable, or the GPU feature-discovery label."""
    return node.gpu_allocatable > 0 or node.labels.get(GPU_PRESENT_LABEL) == "true"


def _requirement_matches(requirement: Mapping[str, Any], value: str | None) -> bool:
    operator = str(requirement.get("operator", ""))
    values = [str(v) for v in requirement.get("values") or []]
    if operator == "In":
        return value is not None and value in values
    if operator == "NotIn":
        return value is None or value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if operator in ("Gt", "Lt"):
        if value is None or len(values) != 1:
            return False
        try:
            have, bound = int(value), int(values[0])
        except ValueError:
            return False
        return have > bound if operator == "Gt" else have < bound
    return False


def term_matches(term: Mapping[str, Any], node: NodeInfo) -> bool:
    """One nodeSelectorTerm: all its expressions and fields hold (an empty term matches nothing)."""
    expressions = list(term.get("matchExpressions") or [])
    fields = list(term.get("matchFields") or [])
    if not expressions and not fields:
        return False
    for requirement in expressions:
        if not _requirement_matches(requirement, node.labels.get(str(requirement.get("key")))):
            return False
    for requirement in fields:
        value = node.name if requirement.get("key") == "metadata.name" else None
        if not _requirement_matches(requirement, value):
            return False
    return True


def affinity_matches(terms: Sequence[Mapping[str, Any]], node: NodeInfo) -> bool:
    """Required node affinity: terms are ORed; no terms means no constraint."""
    return not terms or any(term_matches(term, node) for term in terms)


def selector_mismatch(selector: Mapping[str, str], labels: Mapping[str, str]) -> str | None:
    """The first `key=value` of `selector` the labels lack, or None."""
    for key, value in sorted(selector.items()):
        if labels.get(key) != value:
            return f"{key}={value}"
    return None


def tolerates(toleration: Toleration, taint: Taint) -> bool:
    """Kubernetes' toleration matching (an empty key with Exists tolerates everything)."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.effect:
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if not key:
        return operator == "Exists"
    if key != taint.key:
        return False
    if operator == "Exists":
        return True
    return (toleration.get("value") or "") == taint.value


def blocking_taints(node: NodeInfo, config: Config) -> tuple[Taint, ...]:
    """The node's taints that keep pods away, minus health taints and the startup taint."""
    return tuple(
        t
        for t in node.taints
        if t.effect in BLOCKING_EFFECTS
        and t.key not in HEALTH_TAINTS
        and not (config.startup_taint and t.key == config.startup_taint)
    )


def untolerated(tolerations: Iterable[Toleration], taints: Iterable[Taint]) -> Taint | None:
    """The first taint no toleration covers, or None."""
    tolerations = list(tolerations)
    for taint in taints:
        if not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None


def describe_taint(taint: Taint) -> str:
    value = f"={taint.value}" if taint.value else ""
    return f"{taint.key}{value}:{taint.effect}"


def is_control_plane(node: NodeInfo) -> bool:
    """A node with a control-plane role label (or taint)."""
    return any(role in node.labels for role in CONTROL_PLANE_ROLES) or any(
        t.key in CONTROL_PLANE_ROLES for t in node.taints
    )


def _selects_control_plane(selector: Mapping[str, str], terms: Sequence[Mapping[str, Any]]) -> bool:
    keys = set(selector) | {
        str(e.get("key")) for term in terms for e in term.get("matchExpressions") or []
    }
    return bool(keys & set(CONTROL_PLANE_ROLES))


def allows_control_plane(profile: PlacementProfile) -> bool:
    """Pods with this profile tolerate the control-plane taint or select the role label."""
    tolerations = profile.get("tolerations") or []
    return any(
        tolerates(t, Taint(role, "", "NoSchedule"))
        for t in tolerations
        for role in CONTROL_PLANE_ROLES
    ) or _selects_control_plane(
        profile.get("nodeSelector") or {}, profile.get("requiredNodeAffinity") or []
    )


def describe_amount(resource: str, amount: float) -> str:
    """An allocatable amount as a person reads it: `4`, `1500m`, `191.9Gi`."""
    if resource.startswith(BYTE_RESOURCES):
        for suffix, unit in BINARY_UNITS:
            if amount >= unit:
                return f"{amount / unit:.1f}".removesuffix(".0") + suffix
    if amount == int(amount):
        return str(int(amount))
    return f"{round(amount * 1000)}m"


def _request_order(resource: str) -> tuple[bool, str]:
    # Extended resources (GPUs and other devices) first: the scarcest, and the telling reason.
    return ("/" not in resource, resource)


def request_shortfall(requests: Mapping[str, str] | None, node: NodeInfo) -> str | None:
    """The first request the node's allocatable cannot hold (`needs 8 nvidia.com/gpu, node
    has 4`), or None."""
    if not requests or not node.allocatable:
        return None
    for resource in sorted(requests, key=_request_order):
        have = node.allocatable.get(resource)
        need = request_amount(requests[resource])
        if have is not None and need is not None and need > have:
            shown = describe_amount(resource, have)
            return f"needs {requests[resource]} {resource}, node has {shown}"
    return None


def profile_problem(
    profile: PlacementProfile, node: NodeInfo, taints: Sequence[Taint]
) -> str | None:
    """Why a pod with this profile could not be scheduled on `node`, or None."""
    if is_control_plane(node) and not allows_control_plane(profile):
        return "control-plane node: the pods using this image neither tolerate nor select it"
    missing = selector_mismatch(profile.get("nodeSelector") or {}, node.labels)
    if missing:
        return f"nodeSelector {missing} does not match the node"
    if not affinity_matches(profile.get("requiredNodeAffinity") or [], node):
        return "required node affinity of the pods using this image does not match the node"
    if profile.get("gpu") and not has_gpu(node):
        return f"no GPU: pods using this image request {GPU_RESOURCE}"
    shortfall = request_shortfall(profile.get("requests"), node)
    if shortfall is not None:
        return shortfall
    taint = untolerated(profile.get("tolerations") or [], taints)
    if taint is not None:
        return f"taint {describe_taint(taint)} not tolerated"
    return None


def placement_problem(image: WantedImage, node: NodeInfo, config: Config) -> str | None:
    """Why pods using `image` would not run on `node`, or None when some profile fits."""
    missing = selector_mismatch(image.node_selector, node.labels)
    if missing:
        return f"image's nodeSelector {missing} does not match the node"
    if image.architectures and node.arch and node.arch not in image.architectures:
        return f"image has no {node.arch} build ({', '.join(image.architectures)} only)"
    if not image.profiles:
        if is_control_plane(node) and not _selects_control_plane(image.node_selector, []):
            return "control-plane node: the image's nodeSelector does not select it"
        return None
    taints = blocking_taints(node, config)
    reasons: list[str] = []
    for profile in image.profiles:
        reason = profile_problem(profile, node, taints)
        if reason is None:
            return None
        if reason not in reasons:
            reasons.append(reason)
    if len(reasons) == 1:
        return reasons[0]
    shown = "; ".join(reasons[:3])
    more = f" (+{len(reasons) - 3} more)" if len(reasons) > 3 else ""
    return f"no placement of its pods fits: {shown}{more}"


def eligibility(image: WantedImage, node: NodeInfo, config: Config) -> str | None:
    """None when `image` should be on `node`, else the reason it should not."""
    return node_problem(node, config) or placement_problem(image, node, config)

"""Reading workloads: template objects and workload pods into the planner's `Demand` input.

Pure converters over the JSON form of objects, as `observe` does for nodes and our pods:

- `workload`: a Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob or configured
  custom kind as a `Workload` (its managed images, placement profiles, pods wanted), or None
  when it teaches nothing (opted out, a ReplicaSet a Deployment manages, a Job a CronJob
  made, a finished Job, a suspended CronJob, no managed image);
- `parent_link`: the owner link a pod's owner has (ReplicaSet → Deployment, Job → CronJob);
- `running_pod` / `unschedulable_pod`: where workload pods run, and which wait for capacity;
- `slim_pod`: the few fields of a pod those read, so a cache of every running pod stays small.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from imagesync.cachedimage import PlacementProfile, profile_from_pod
from imagesync.config import Config
from imagesync.templates import TemplateKind, managed_images, pod_templates, template_in_scope
from prefetcher.model import RunningPod, UnschedulablePod, Workload
from prefetcher.observe import normalize_or_keep

# The controller kind a pod made from a template carries, so a profile learned from the
# template is the one the webhook learns from the pod (one profile, not two).
POD_OWNER_KIND = {"Deployment": "ReplicaSet", "CronJob": "Job"}
# Owners that are managed themselves; the object above them speaks for their template.
MANAGED_BY_PARENT = {"ReplicaSet": "Deployment", "Job": "CronJob"}


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def workload_key(kind: str, namespace: str, name: str) -> str:
    return f"{kind}/{namespace}/{name}"


def controller_of(meta: Mapping[str, Any]) -> tuple[str, str] | None:
    """(kind, name) of the controlling ownerReference, if any."""
    for owner in meta.get("ownerReferences") or []:
        if isinstance(owner, Mapping) and owner.get("controller"):
            return str(owner.get("kind") or ""), str(owner.get("name") or "")
    return None


def _finished(obj: Mapping[str, Any]) -> bool:
    for condition in _mapping(obj.get("status")).get("conditions") or []:
        if (
            isinstance(condition, Mapping)
            and condition.get("type") in ("Complete", "Failed")
            and condition.get("status") == "True"
        ):
            return True
    return False


def workload(
    obj: Mapping[str, Any], kind: TemplateKind, config: Config, excluded: Collection[str]
) -> Workload | None:
    """The workload `obj` describes, or None when it teaches nothing (see the module)."""
    meta, spec = _mapping(obj.get("metadata")), _mapping(obj.get("spec"))
    namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
    if namespace in excluded or meta.get("deletionTimestamp"):
        return None
    owner = controller_of(meta)
    if owner is not None and MANAGED_BY_PARENT.get(kind.kind) == owner[0]:
        return None
    if (kind.kind == "Job" and _finished(obj)) or (kind.kind == "CronJob" and spec.get("suspend")):
        return None
    images: dict[str, None] = {}
    profiles: list[PlacementProfile] = []
    replicas: int | None = 0
    for template in pod_templates(obj, kind):
        if not template_in_scope(template.template, config.mode):
            continue
        found = managed_images(template.template, config.registries)
        if not found:
            continue
        images.update(dict.fromkeys(found))
        profile = profile_from_pod(template.template, namespace)
        profile["ownerKind"] = POD_OWNER_KIND.get(kind.kind, kind.kind)
        if profile not in profiles:
            profiles.append(profile)
        if replicas is not None:
            replicas = None if template.replicas is None else replicas + template.replicas
    if not images:
        return None
    cron = kind.kind == "CronJob"
    return Workload(
        key=workload_key(kind.kind, namespace, name),
        images=tuple(images),
        profiles=tuple(profiles),
        replicas=replicas,
        schedule=str(spec.get("schedule") or "") if cron else "",
        time_zone=str(spec.get("timeZone") or "") if cron else "",
    )


def parent_link(obj: Mapping[str, Any], kind: str) -> tuple[str, str] | None:
    """(this object's key, its managing parent's key) for a ReplicaSet of a Deployment or a
    Job of a CronJob; None otherwise."""
    meta = _mapping(obj.get("metadata"))
    owner = controller_of(meta)
    if owner is None or MANAGED_BY_PARENT.get(kind) != owner[0]:
        return None
    namespace = str(meta.get("namespace") or "")
    return (
        workload_key(kind, namespace, str(meta.get("name") or "")),
        workload_key(owner[0], namespace, owner[1]),
    )


def _pod_images(spec: Mapping[str, Any]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for section in ("initContainers", "containers"):
        for container in spec.get(section) or []:
            image = _mapping(container).get("image")
            if isinstance(image, str) and image:
                seen[normalize_or_keep(image)] = None
    return tuple(seen)


def slim_pod(obj: dict[str, Any]) -> dict[str, Any]:
    """The fields of a workload pod that `running_pod` and `unschedulable_pod` read."""
    meta, spec, status = (_mapping(obj.get(k)) for k in ("metadata", "spec", "status"))
    images = [
        {"image": _mapping(c).get("image")}
        for section in ("initContainers", "containers")
        for c in spec.get(section) or []
    ]
    return {
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "ownerReferences")
            if k in meta
        },
        "spec": {"nodeName": spec.get("nodeName") or "", "containers": images},
        "status": {
            "phase": status.get("phase") or "",
            "conditions": [
                c
                for c in status.get("conditions") or []
                if _mapping(c).get("type") == "PodScheduled"
            ],
        },
    }


def running_pod(obj: Mapping[str, Any]) -> RunningPod | None:
    """A workload pod running on a node (or bound and starting), or None."""
    meta, spec = _mapping(obj.get("metadata")), _mapping(obj.get("spec"))
    node = str(spec.get("nodeName") or "")
    if not node:
        return None
    owner = controller_of(meta)
    namespace = str(meta.get("namespace") or "")
    return RunningPod(
        node=node,
        workload=workload_key(owner[0], namespace, owner[1]) if owner else "",
        images=_pod_images(spec),
    )


def unschedulable_pod(obj: Mapping[str, Any]) -> UnschedulablePod | None:
    """A Pending pod the scheduler marked Unschedulable (no node fits: waits for capacity)."""
    meta, spec, status = (_mapping(obj.get(k)) for k in ("metadata", "spec", "status"))
    if spec.get("nodeName") or status.get("phase", "Pending") != "Pending":
        return None
    for condition in status.get("conditions") or []:
        condition = _mapping(condition)
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            return UnschedulablePod(
                pod=f"{meta.get('namespace', '')}/{meta.get('name', '')}",
                images=_pod_images(spec),
            )
    return None

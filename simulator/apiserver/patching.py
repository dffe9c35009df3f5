"""JSON patch, JSON merge patch and strategic merge patch, as pure functions over dicts.

Strategic merge patch needs to know which lists merge by key; the real server reads that from
the Go struct tags (`patchStrategy`, `patchMergeKey`). `merge_keys(kind)` is that table for the
kinds the project and kubectl touch; every list not in it is replaced, like a merge patch.
"""

from __future__ import annotations

import copy
from types import MappingProxyType
from typing import Any

import jsonpatch

from .errors import ApiError, bad_request

Obj = dict[str, Any]

_PRIMITIVE_SET = ""  # a merged list of scalars (e.g. finalizers)

_CONTAINER = {
    "env": "name",
    "ports": "containerPort",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
}
_POD_SPEC = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "schedulingGates": "name",
    "resourceClaims": "name",
    "topologySpreadConstraints": "topologyKey",
}
_META = {"ownerReferences": "uid", "finalizers": _PRIMITIVE_SET}
_POD_TEMPLATE_KINDS = {
    "Deployment": "spec.template.spec",
    "ReplicaSet": "spec.template.spec",
    "DaemonSet": "spec.template.spec",
    "StatefulSet": "spec.template.spec",
    "Job": "spec.template.spec",
    "CronJob": "spec.jobTemplate.spec.template.spec",
}


def _pod_spec_keys(prefix: str) -> dict[str, str]:
    out = {f"{prefix}.{k}": v for k, v in _POD_SPEC.items()}
    for c in ("containers", "initContainers", "ephemeralContainers"):
        out.update({f"{prefix}.{c}.{k}": v for k, v in _CONTAINER.items()})
    return out


def merge_keys(kind: str) -> dict[str, str]:
    """Field path → patchMergeKey for lists that merge (`""` = set of scalars)."""
    keys = {f"metadata.{k}": v for k, v in _META.items()}
    if kind == "Pod":
        keys.update(_pod_spec_keys("spec"))
        keys.update({"status.conditions": "type", "status.podIPs": "ip", "status.hostIPs": "ip"})
    elif kind == "Node":
        keys.update(
            {
                "spec.podCIDRs": _PRIMITIVE_SET,
                "status.conditions": "type",
                "status.addresses": "type",
            }
        )
    elif kind in _POD_TEMPLATE_KINDS:
        keys.update(_pod_spec_keys(_POD_TEMPLATE_KINDS[kind]))
        keys["status.conditions"] = "type"
    elif kind == "Service":
        keys["spec.ports"] = "port"
    elif kind in ("PodDisruptionBudget", "Namespace", "CustomResourceDefinition"):
        keys["status.conditions"] = "type"
    return keys


def json_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge recursively, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge_patch(result.get(key), value)
    return result


class _ReplaceOrAdd(jsonpatch.ReplaceOperation):
    """`replace` of a missing key of an existing map adds it, as kube-apiserver's JSON patch
    (evanphx/json-patch) does; a missing parent or list index still fails."""

    def apply(self, obj: Any) -> Any:
        parent, part = self.pointer.to_last(obj)
        if isinstance(parent, dict) and part is not None and part not in parent:
            return jsonpatch.AddOperation(self.operation, pointer_cls=self.pointer_cls).apply(obj)
        return super().apply(obj)


class _KubeJsonPatch(jsonpatch.JsonPatch):
    """RFC 6902 as the real API server applies it."""

    operations = MappingProxyType({**jsonpatch.JsonPatch.operations, "replace": _ReplaceOrAdd})


def json_patch(target: Obj, patch: Any) -> Obj:
    """RFC 6902 as the real server applies it; a failing `test` or a bad path is 422 like the
    real server, junk is 400."""
    if not isinstance(patch, list):
        raise bad_request("json patch must be a list of operations")
    try:
        result = _KubeJsonPatch(patch).apply(target)
    except jsonpatch.JsonPatchTestFailed as e:
        raise ApiError(
            422, "Invalid", f"the server rejected our request due to an error in our request: {e}"
        ) from e
    except (
        jsonpatch.JsonPatchException,
        jsonpatch.JsonPointerException,
        KeyError,
        IndexError,
        TypeError,
    ) as e:
        raise ApiError(
            422, "Invalid", f"the server rejected our request due to an error in our request: {e}"
        ) from e
    if not isinstance(result, dict):
        raise bad_request("json patch did not produce an object")
    return result


def strategic_merge_patch(target: Obj, patch: Any, kind: str) -> Obj:
    """Strategic merge patch with the directives kubectl sends ($patch, $setElementOrder, ...)."""
    if not isinstance(patch, dict):
        raise bad_request("strategic merge patch must be a JSON object")
    result = _merge_map(target, patch, "", merge_keys(kind))
    return result if isinstance(result, dict) else {}


def _strip(value: Any) -> Any:
    """Drop directives from a value that has nothing to merge with."""
    if isinstance(value, dict):
        if value.get("$patch") == "delete":
            return None
        return {k: _strip(v) for k, v in value.items() if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        out = [_strip(v) for v in value if not (isinstance(v, dict) and "$patch" in v)]
        return [v for v in out if v is not None]
    return value


def _merge_map(original: Any, patch: Obj, path: str, keys: dict[str, str]) -> Any:
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return _strip({k: v for k, v in patch.items() if k != "$patch"})
    result: Obj = dict(original) if isinstance(original, dict) else {}
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key == "$patch":
            continue
        if key == "$retainKeys":
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value or []
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            drop = value or []
            if isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if v not in drop]
            continue
        child = f"{path}.{key}" if path else key
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = _merge_map(result.get(key), value, child, keys)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list) and child in keys:
            result[key] = _merge_list(result.get(key), value, child, keys)
        else:
            result[key] = _strip(value)
    if "$retainKeys" in patch:
        retain = set(patch["$retainKeys"] or [])
        result = {k: v for k, v in result.items() if k in retain}
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _reorder(
                result[field], order, keys.get(f"{path}.{field}" if path else field, "")
            )
    return result


def _merge_list(original: Any, patch: list[Any], path: str, keys: dict[str, str]) -> list[Any]:
    base: list[Any] = list(original) if isinstance(original, list) else []
    key = keys[path]
    if any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch):
        return [_strip(p) for p in patch if not (isinstance(p, dict) and "$patch" in p)]
    if key == _PRIMITIVE_SET:
        for item in patch:
            if item not in base:
                base.append(item)
        return base
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            if isinstance(item, dict) and item.get("$patch") == "delete":
                continue
            base.append(_strip(item))
            continue
        idx = next(
            (i for i, o in enumerate(base) if isinstance(o, dict) and o.get(key) == item[key]), None
        )
        if item.get("$patch") == "delete":
            base = [o for o in base if not (isinstance(o, dict) and o.get(key) == item[key])]
        elif idx is None:
            base.append(_strip(item))
        else:
            merged = _merge_map(base[idx], item, path, keys)
            if merged is None:
                base.pop(idx)
            else:
                base[idx] = merged
    return base


def _reorder(items: list[Any], order: list[Any], key: str) -> list[Any]:
    def ident(v: Any) -> Any:
        if key and isinstance(v, dict):
            return v.get(key)
        return v if not isinstance(v, dict | list) else None

    wanted = [ident(o) for o in order]
    pos = {w: i for i, w in enumerate(wanted) if w is not None}
    return sorted(items, key=lambda v: pos.get(ident(v), len(pos)))

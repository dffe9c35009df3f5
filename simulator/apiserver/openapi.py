"""A minimal OpenAPI v3 surface: enough for kubectl to find that the server validates fields
itself (the `fieldValidation` parameter on PATCH), so `kubectl create/apply` need no
`--validate=false`. It declares no schemas, so kubectl computes strategic merge patches from
its own built-in types, as it does against servers without OpenAPI."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .resources import ResourceDef, ResourceRegistry

Obj = dict[str, Any]

_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
)


def _gv_path(rd: ResourceDef) -> str:
    return f"apis/{rd.group}/{rd.version}" if rd.group else f"api/{rd.version}"


def _doc_hash(defs: list[ResourceDef]) -> str:
    raw = json.dumps(sorted((d.group, d.version, d.plural, d.kind, d.namespaced) for d in defs))
    return hashlib.sha256(raw.encode()).hexdigest()[:32].upper()


def index(registry: ResourceRegistry) -> Obj:
    by_gv: dict[str, list[ResourceDef]] = {}
    for rd in registry.all():
        by_gv.setdefault(_gv_path(rd), []).append(rd)
    paths = {
        gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash={_doc_hash(defs)}"}
        for gv, defs in sorted(by_gv.items())
    }
    return {"paths": paths}


def _item_path(rd: ResourceDef) -> str:
    base = f"/{_gv_path(rd)}"
    if rd.namespaced:
        return f"{base}/namespaces/{{namespace}}/{rd.plural}/{{name}}"
    return f"{base}/{rd.plural}/{{name}}"


def group_version(registry: ResourceRegistry, gv_path: str) -> Obj | None:
    defs = [rd for rd in registry.all() if _gv_path(rd) == gv_path]
    if not defs:
        return None
    paths: Obj = {}
    for rd in defs:
        gvk = {"group": rd.group, "version": rd.version, "kind": rd.kind}
        params = [
            {"name": n, "in": "query", "schema": {"type": "string"}, "uniqueItems": True}
            for n in ("dryRun", "fieldManager", "fieldValidation", "force")
        ]
        paths[_item_path(rd)] = {
            "patch": {
                "operationId": f"patch{rd.kind}",
                "parameters": params,
                "requestBody": {
                    "content": {t: {"schema": {"type": "object"}} for t in _PATCH_TYPES}
                },
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": gvk,
            }
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": {}},
    }

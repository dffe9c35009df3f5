"""Update and patch as the real server does them — a part of `Core` kept apart."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
import yaml

from . import errors, kinds, patching, schema
from .errors import ApiError
from .objects import as_version, deep
from .resources import ResourceDef, ResourceRegistry
from .store import Store

Obj = dict[str, Any]
Admit = Callable[[ResourceDef, str, Obj, Obj | None, bool], Obj]
Validate = Callable[[ResourceDef, str, Obj, Obj | None, bool], None]

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


class Updates:
    """Mixed into `Core`, which provides the attributes below."""

    store: Store
    registry: ResourceRegistry
    admit: Admit | None
    validate_admission: Validate | None
    admission_wanted: Callable[[ResourceDef, str], bool] | None

    if TYPE_CHECKING:

        def create(
            self, rd: ResourceDef, namespace: str, body: Any, *, dry_run: bool = False
        ) -> Obj: ...

        def _now(self) -> str: ...

        def _normalize_body(self, rd: ResourceDef, namespace: str, body: Any) -> Obj: ...

        def _remove(self, rd: ResourceDef, obj: Obj) -> Obj: ...

    def update(
        self,
        rd: ResourceDef,
        namespace: str,
        name: str,
        body: Any,
        *,
        subresource: str = "",
        dry_run: bool = False,
    ) -> Obj:
        obj = self._normalize_body(rd, namespace, body)
        if obj["metadata"].get("name") not in (None, name):
            raise errors.bad_request(
                f"the name of the object ({obj['metadata'].get('name')}) does not match the name on the URL ({name})"
            )
        obj["metadata"]["name"] = name
        with self.store.lock:
            old = self.store.get(rd.key, namespace if rd.namespaced else "", name)
            if old is None:
                raise errors.not_found(rd.plural, rd.group, name)
            if not self._admits_updates(rd, subresource):
                return self._update_locked(rd, obj, old, subresource=subresource, dry_run=dry_run)
        return self._admitted_update(rd, obj, old, dry_run=dry_run)

    def _admits_updates(self, rd: ResourceDef, subresource: str) -> bool:
        wanted = self.admission_wanted
        return not subresource and wanted is not None and wanted(rd, "UPDATE")

    def _admitted_update(self, rd: ResourceDef, obj: Obj, old: Obj, *, dry_run: bool) -> Obj:
        """An update that webhooks must see: compute the result, call them without holding the
        lock, then write it unless the object changed meanwhile (409, as an optimistic write)."""
        with self.store.lock:
            candidate = self._update_locked(rd, deep(obj), old, subresource="", dry_run=True)
        if candidate is old or candidate == as_version(rd, old):
            return candidate  # nothing to change: no webhook call, no write
        if self.admit is not None:
            candidate = self.admit(rd, "UPDATE", candidate, old, dry_run)
        if self.validate_admission is not None:
            self.validate_admission(rd, "UPDATE", candidate, old, dry_run)
        meta = old["metadata"]
        with self.store.lock:
            current = self.store.get(rd.key, str(meta.get("namespace") or ""), str(meta["name"]))
            if current is None:
                raise errors.not_found(rd.plural, rd.group, str(meta["name"]))
            if current["metadata"]["resourceVersion"] != meta["resourceVersion"]:
                raise errors.conflict(
                    rd.plural,
                    rd.group,
                    str(meta["name"]),
                    "the object has been modified; please apply your changes to the latest version and try again",
                )
            return self._update_locked(rd, candidate, current, subresource="", dry_run=dry_run)

    def _update_locked(
        self, rd: ResourceDef, obj: Obj, old: Obj, *, subresource: str, dry_run: bool
    ) -> Obj:
        meta, old_meta = obj["metadata"], old["metadata"]
        name = str(old_meta["name"])
        want_rv = meta.get("resourceVersion")
        if want_rv not in (None, "") and str(want_rv) != old_meta["resourceVersion"]:
            raise errors.conflict(
                rd.plural,
                rd.group,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        if meta.get("uid") not in (None, "", old_meta.get("uid")):
            raise errors.conflict(
                rd.plural,
                rd.group,
                name,
                f"Precondition failed: UID in precondition: {meta.get('uid')}, UID in object meta: {old_meta.get('uid')}",
            )
        if subresource == "status":
            new = {**old, "status": obj.get("status")}
            if new["status"] is None:
                new.pop("status")
        else:
            new = obj
            if rd.status:
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
            keep = (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
            )
            for k in keep:
                if k in old_meta:
                    meta[k] = old_meta[k]
                else:
                    meta.pop(k, None)
            if old_meta.get("deletionTimestamp"):
                added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
                if added:
                    raise errors.forbidden(
                        rd.plural,
                        rd.group,
                        name,
                        "no new finalizers can be added if the object is being deleted",
                    )
            if not rd.custom:
                if rd.kind == "Pod":
                    kinds.validate_pod_update(new, old)
                elif rd.kind == "Namespace":
                    new["status"] = old.get("status")
                elif rd.kind == "Secret":
                    kinds.apply_defaults(rd.kind, new)
                kinds.validate(rd.kind, rd.group, new)
                if rd.kind == "CustomResourceDefinition":
                    new["status"] = {
                        **(old.get("status") or {}),
                        **kinds.crd_status(new, self._now()),
                    }
        new_meta = dict(new["metadata"]) if subresource != "status" else dict(old_meta)
        new_meta["resourceVersion"] = old_meta["resourceVersion"]
        new = {**new, "metadata": new_meta}
        if rd.custom:
            new = schema.check(rd.kind, rd.group, rd.schema, rd.validator, new)
        else:
            kinds.normalize(rd.kind, new)
        if (
            subresource != "status"
            and "generation" in old_meta
            and self._generation_part(rd, new) != self._generation_part(rd, old)
        ):
            new_meta["generation"] = int(old_meta["generation"]) + 1
        if new == old:
            return as_version(rd, old)  # a no-op write does not bump resourceVersion
        if dry_run:
            return new
        finished = new_meta.get("deletionTimestamp") and not new_meta.get("finalizers")
        if finished and (
            rd.kind != "Pod" or rd.custom or not new_meta.get("deletionGracePeriodSeconds")
        ):
            return self._remove(rd, self.store.update(rd.key, new, old))
        stored = self.store.update(rd.key, new, old)
        if rd.kind == "CustomResourceDefinition" and not rd.custom:
            self.registry.set_crd(stored)
        return as_version(rd, stored)

    def patch(
        self,
        rd: ResourceDef,
        namespace: str,
        name: str,
        content_type: str,
        raw: bytes,
        *,
        subresource: str = "",
        dry_run: bool = False,
        field_manager: str = "",
        force: bool = False,
    ) -> tuple[int, Obj]:
        ctype = content_type.split(";")[0].strip().lower()
        if ctype not in (MERGE_PATCH, JSON_PATCH, STRATEGIC_PATCH, APPLY_PATCH):
            raise errors.unsupported_media_type(content_type)
        if ctype == STRATEGIC_PATCH and rd.custom:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "strategic merge patch is not supported for custom resources; use json or merge patch",
            )
        try:
            patch = yaml.safe_load(raw) if ctype == APPLY_PATCH else orjson.loads(raw or b"null")
        except (ValueError, yaml.YAMLError) as e:
            raise errors.bad_request(f"error decoding patch: {e}") from e
        if ctype == APPLY_PATCH and not field_manager:
            raise errors.bad_request(
                "PATCH, application/apply-patch+yaml requires fieldManager parameter"
            )
        ns = namespace if rd.namespaced else ""
        applying = ctype == APPLY_PATCH and not subresource and isinstance(patch, dict)
        if applying and self.store.get(rd.key, ns, name) is None:
            # Apply creates a missing object; outside the lock, since admission may call out.
            body = {**patch, "metadata": {**(patch.get("metadata") or {}), "name": name}}
            return 201, self.create(rd, namespace, body, dry_run=dry_run)
        with self.store.lock:
            old = self.store.get(rd.key, ns, name)
            if old is None:
                raise errors.not_found(rd.plural, rd.group, name)
            current = as_version(rd, old)
            if ctype == JSON_PATCH:
                patched = patching.json_patch(deep(current), patch)
            elif ctype == MERGE_PATCH or (ctype == APPLY_PATCH and rd.custom):
                patched = patching.json_merge_patch(current, patch)
            else:
                patched = patching.strategic_merge_patch(deep(current), patch, rd.kind)
            if not isinstance(patched, dict):
                raise errors.bad_request("patch did not produce an object")
            if ctype == APPLY_PATCH:
                patched.setdefault("metadata", {})["resourceVersion"] = (
                    patch.get("metadata") or {}
                ).get("resourceVersion") or old["metadata"]["resourceVersion"]
            obj = self._normalize_body(rd, namespace, patched)
            obj["metadata"]["name"] = name
            if not self._admits_updates(rd, subresource):
                return 200, self._update_locked(
                    rd, obj, old, subresource=subresource, dry_run=dry_run
                )
        return 200, self._admitted_update(rd, obj, old, dry_run=dry_run)

    @staticmethod
    def _generation_part(rd: ResourceDef, obj: Obj) -> Obj:
        skip = (
            {"metadata", "status", "kind", "apiVersion"}
            if rd.status or not rd.custom
            else {"metadata", "kind", "apiVersion"}
        )
        return {k: v for k, v in obj.items() if k not in skip}

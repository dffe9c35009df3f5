"""The REST semantics of the API server, independent of HTTP: create, read, list, watch, update,
patch, delete, with the real server's codes, defaults, concurrency and deletion rules."""

from __future__ import annotations

import base64
import heapq
import json
import random
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import yaml

from . import conversion, errors, kinds, patching, schema, serviceaccount
from .deletion import Deletion
from .errors import ApiError
from .objects import as_version, deep, rfc3339
from .resources import ResourceDef, ResourceRegistry
from .selectors import FieldSelector, LabelSelector, parse_field_selector, parse_label_selector
from .store import Store
from .watch import Watcher, WatchOptions, WatchStream

Obj = dict[str, Any]
Admit = Callable[[ResourceDef, str, Obj, Obj | None, bool], Obj]
Validate = Callable[[ResourceDef, str, Obj, Obj | None, bool], None]

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass
class Result:
    """A response without HTTP: code and JSON body, or a watch stream."""

    code: int
    body: Obj | None = None
    stream: WatchStream | None = None
    key: str = ""  # a plain list of this resource: items are encoded from the store's cache
    # The items of a built-in kind's list carry no kind and apiVersion (custom resources' do).
    bare_items: bool = False


@dataclass
class Core(Deletion):
    """The server's state and its REST operations (thread-safe)."""

    registry: ResourceRegistry = field(default_factory=ResourceRegistry)
    store: Store = field(default_factory=Store)
    clock: Callable[[], float] = time.time
    admit: Admit | None = None
    validate_admission: Validate | None = None
    admission_wanted: Callable[[ResourceDef, str], bool] | None = None
    bookmark_interval: float = 60.0
    default_watch_timeout: float = 1800.0
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        for ns in DEFAULT_NAMESPACES:
            self.create(self.resource("", "v1", "namespaces"), "", {"metadata": {"name": ns}})

    # --- helpers -------------------------------------------------------------------------

    def resource(self, group: str, version: str, plural: str) -> ResourceDef:
        rd = self.registry.lookup(group, version, plural)
        if rd is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return rd

    def _now(self) -> str:
        return rfc3339(self.clock())

    def _check_namespace(
        self, rd: ResourceDef, namespace: str, creating: bool, name: str = ""
    ) -> None:
        if not rd.namespaced:
            return
        ns = self.store.get("/namespaces", "", namespace)
        if ns is None:
            raise errors.not_found("namespaces", "", namespace)
        if creating and ns["metadata"].get("deletionTimestamp"):
            raise ApiError(
                403,
                "Forbidden",
                f'{rd.plural} "{name}" is forbidden: unable to create new content in namespace {namespace} because it is being terminated',
                kind=rd.plural,
                group=rd.group,
                name=name,
                causes=[
                    {
                        "reason": "NamespaceTerminating",
                        "message": f"namespace {namespace} is being terminated",
                        "field": "metadata.namespace",
                    }
                ],
            )

    def _normalize_body(self, rd: ResourceDef, namespace: str, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        obj: Obj = deep(body)
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if kind is not None and kind != rd.kind:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version ({rd.api_version}) or kind {kind!r} is not {rd.kind!r}"
            )
        obj["kind"] = rd.kind
        obj["apiVersion"] = api_version if (rd.custom and api_version) else rd.api_version
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            meta = obj["metadata"] = {}
        if rd.namespaced:
            if meta.get("namespace") not in (None, "", namespace):
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        for drop in ("managedFields", "selfLink"):
            meta.pop(drop, None)
        if rd.group == conversion.EVENTS_GROUP and not rd.custom:
            return conversion.event_to_storage(obj)
        return obj

    @staticmethod
    def _generation_part(rd: ResourceDef, obj: Obj) -> Obj:
        skip = (
            {"metadata", "status", "kind", "apiVersion"}
            if rd.status or not rd.custom
            else {"metadata", "kind", "apiVersion"}
        )
        return {k: v for k, v in obj.items() if k not in skip}

    # --- reads ---------------------------------------------------------------------------

    def get(self, rd: ResourceDef, namespace: str, name: str) -> Obj:
        obj = self.store.get(rd.key, namespace if rd.namespaced else "", name)
        if obj is None:
            raise errors.not_found(rd.plural, rd.group, name)
        return as_version(rd, obj)

    def list(self, rd: ResourceDef, namespace: str | None, query: Mapping[str, str]) -> Obj:
        labels, fields, namespace, node = _selection(rd, namespace, query)
        rv_param = query.get("resourceVersion", "")
        exact = query.get("resourceVersionMatch", "") == "Exact"
        try:
            limit = int(query.get("limit", "0") or 0)
        except ValueError as e:
            raise errors.bad_request(f"invalid limit: {query.get('limit')}") from e
        if rv_param == "0":
            limit = 0  # served from the watch cache: the whole list, like the real server
        cont = query.get("continue", "")
        after: tuple[str, str] | None = None
        with self.store.lock:
            list_rv = self.store.rv
            snapshot = False
            if rv_param not in ("", "0") and not cont:
                try:
                    want = int(rv_param)
                except ValueError as e:
                    raise errors.bad_request(f"invalid resource version: {rv_param}") from e
                if want > list_rv:
                    raise ApiError(
                        504,
                        "Timeout",
                        f"Too large resource version: {want}, current: {list_rv}",
                        retry_after=1,
                    )
                if exact:
                    list_rv, snapshot = want, True
            if cont:
                token = self._decode_continue(cont)
                if token["rv"] < self.store.oldest_rv():
                    raise errors.expired(
                        "The provided continue parameter is too old to display a consistent list result. "
                        "You can start a new list without the continue parameter."
                    )
                list_rv, snapshot = token["rv"], True
                after = (token["ns"], token["name"])
            # The state at list_rv: current objects, with those changed since put back.
            past = self.store.state_at(rd.key, list_rv) if snapshot else {}
            items: list[Obj] = []
            next_after: tuple[str, str] | None = None
            remaining = 0
            if node is not None and not limit and not past:
                cands = self.store.objects(rd.key, namespace, node)
                cands.sort(
                    key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"])
                )
                items = [
                    o
                    for o in cands
                    if labels.matches(o["metadata"].get("labels")) and fields.matches(o)
                ]
            else:
                gone = sorted(
                    ref
                    for ref, was in past.items()
                    if was is not None
                    and self.store.get(rd.key, *ref) is None
                    and (namespace is None or ref[0] == namespace)
                    and (after is None or ref > after)
                )
                refs = heapq.merge(self.store.sorted_refs(rd.key, namespace, after), gone)
                for ref in refs:
                    obj = past[ref] if ref in past else self.store.get(rd.key, *ref)
                    if (
                        obj is None
                        or not labels.matches(obj["metadata"].get("labels"))
                        or not fields.matches(obj)
                    ):
                        continue
                    if limit and len(items) >= limit:
                        next_after = (
                            items[-1]["metadata"].get("namespace", ""),
                            items[-1]["metadata"]["name"],
                        )
                        remaining = 1 + sum(1 for _ in refs)
                        break
                    items.append(obj)
        meta: Obj = {"resourceVersion": str(list_rv)}
        if next_after is not None:
            meta["continue"] = self._encode_continue(list_rv, next_after)
            if labels.empty and fields.empty:
                meta["remainingItemCount"] = remaining
        if rd.custom or rd.storage_group is not None:
            items = [as_version(rd, o) for o in items]
        if rd.custom:
            meta.setdefault("continue", "")  # the real server's unstructured lists say so
        return {
            "kind": f"{rd.kind}List",
            "apiVersion": rd.api_version,
            "metadata": meta,
            "items": items,
        }

    @staticmethod
    def _encode_continue(rv: int, after: tuple[str, str]) -> str:
        raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "ns": after[0], "name": after[1]})
        return base64.urlsafe_b64encode(raw.encode()).decode()

    @staticmethod
    def _decode_continue(token: str) -> Obj:
        try:
            data = json.loads(base64.urlsafe_b64decode(token.encode() + b"==="))
            return {"rv": int(data["rv"]), "ns": str(data["ns"]), "name": str(data["name"])}
        except (ValueError, KeyError, TypeError) as e:
            raise errors.bad_request(
                "continue key is not valid: incorrect encoded start resourceVersion"
            ) from e

    def watch(
        self, rd: ResourceDef, namespace: str | None, query: Mapping[str, str]
    ) -> WatchStream:
        labels, fields, namespace, node = _selection(rd, namespace, query)
        rv_param = query.get("resourceVersion", "")
        send_initial = query.get("sendInitialEvents", "") == "true"
        since: int | None
        if rv_param in ("", "0"):
            since = None
        else:
            try:
                since = int(rv_param)
            except ValueError as e:
                raise errors.bad_request(f"invalid resource version: {rv_param}") from e
            if send_initial:
                since = None
        timeout = float(query.get("timeoutSeconds", "") or self.default_watch_timeout)
        watcher = Watcher(rd.key, namespace, node or None, labels, fields)
        options = WatchOptions(
            since,
            timeout,
            query.get("allowWatchBookmarks", "") == "true",
            send_initial and query.get("allowWatchBookmarks", "") == "true",
        )
        stream = WatchStream(self.store, rd, watcher, [], options, self.bookmark_interval)
        try:
            initial = self.store.watch(watcher, since)
        except ApiError as e:
            stream.error = e.status()
            return stream
        if rd.custom or rd.storage_group is not None:
            initial = [(k, as_version(rd, o)) for k, o in initial]
            stream.convert = lambda o: as_version(rd, o)
        stream.initial = initial
        return stream

    # --- create --------------------------------------------------------------------------

    def create(self, rd: ResourceDef, namespace: str, body: Any, *, dry_run: bool = False) -> Obj:
        obj = self._normalize_body(rd, namespace, body)
        if rd.review:
            return kinds.review_answer(rd.kind, obj)
        meta = obj["metadata"]
        self._check_namespace(rd, namespace, creating=True, name=str(meta.get("name") or ""))
        if not meta.get("name"):
            gen = meta.get("generateName")
            if not gen:
                raise errors.invalid(
                    rd.kind,
                    rd.group,
                    "",
                    [
                        (
                            "FieldValueRequired",
                            "metadata.name",
                            "Required value: name or generateName is required",
                        )
                    ],
                )
            meta["name"] = str(gen) + "".join(self.rng.choice(_NAME_CHARS) for _ in range(5))
        for drop in (
            "resourceVersion",
            "uid",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "creationTimestamp",
        ):
            meta.pop(drop, None)
        if rd.kind == "Pod" and not rd.custom and meta.get("deletionTimestamp") is None:
            self._resolve_priority(obj)
        if not rd.custom:
            kinds.apply_defaults(rd.kind, obj)
            if rd.kind == "Pod":
                suffix = "".join(self.rng.choice(_NAME_CHARS) for _ in range(5))
                serviceaccount.mount_token(obj, suffix)
        if self.admit is not None:
            obj = self.admit(rd, "CREATE", obj, None, dry_run)
            meta = obj["metadata"]
            if not rd.custom:
                kinds.apply_defaults(rd.kind, obj)
        kinds.validate(rd.kind if not rd.custom else "", rd.group, obj)
        if self.validate_admission is not None:
            self.validate_admission(rd, "CREATE", obj, None, dry_run)
        if rd.custom and rd.status:
            obj.pop("status", None)
        if rd.custom:
            obj = schema.check(rd.kind, rd.group, rd.schema, rd.validator, obj)
            meta = obj["metadata"]
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = self._now()
        if rd.custom or rd.kind in kinds.GENERATION_KINDS:
            meta["generation"] = 1
        if rd.kind == "CustomResourceDefinition" and not rd.custom:
            obj["status"] = kinds.crd_status(obj, self._now())
        with self.store.lock:
            if self.store.get(rd.key, namespace if rd.namespaced else "", meta["name"]) is not None:
                raise errors.already_exists(rd.plural, rd.group, meta["name"])
            if rd.custom and self.registry.lookup(rd.group, rd.version, rd.plural) is None:
                raise errors.not_found(rd.plural, rd.group, meta["name"])
            if dry_run:
                return obj
            stored = self.store.create(rd.key, obj)
            if rd.kind == "CustomResourceDefinition" and not rd.custom:
                self.registry.set_crd(stored)
            if rd.kind == "Namespace" and not rd.custom:
                self._create_default_sa(meta["name"])
        return as_version(rd, stored)

    def _create_default_sa(self, namespace: str) -> None:
        sa = self.resource("", "v1", "serviceaccounts")
        if self.store.get(sa.key, namespace, "default") is None:
            self.store.create(
                sa.key,
                {
                    "kind": "ServiceAccount",
                    "apiVersion": "v1",
                    "metadata": {
                        "name": "default",
                        "namespace": namespace,
                        "uid": str(uuid.uuid4()),
                        "creationTimestamp": self._now(),
                    },
                },
            )

    def _resolve_priority(self, pod: Obj) -> None:
        spec = pod.setdefault("spec", {})
        name = spec.get("priorityClassName")
        classes = self.store.objects("scheduling.k8s.io/priorityclasses", "")
        if name:
            pc = next((c for c in classes if c["metadata"]["name"] == name), None)
            if pc is None and name not in ("system-node-critical", "system-cluster-critical"):
                raise errors.forbidden(
                    "pods",
                    "",
                    str(pod["metadata"].get("name", "")),
                    f"no PriorityClass with name {name} was found",
                )
            builtin = {"system-node-critical": 2000001000, "system-cluster-critical": 2000000000}
            spec["priority"] = int(pc.get("value", 0)) if pc is not None else builtin[name]
            if pc is not None and pc.get("preemptionPolicy"):
                spec["preemptionPolicy"] = pc["preemptionPolicy"]
        else:
            default = next((c for c in classes if c.get("globalDefault")), None)
            spec.setdefault("priority", int(default.get("value", 0)) if default else 0)
            if default is not None:
                spec["priorityClassName"] = default["metadata"]["name"]

    # --- update / patch ------------------------------------------------------------------

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

    # --- binding -------------------------------------------------------------------------

    def bind(self, rd: ResourceDef, namespace: str, name: str, body: Any) -> Obj:
        """POST pods/NAME/binding: sets spec.nodeName once and the PodScheduled condition."""
        if not isinstance(body, dict):
            raise errors.bad_request("binding must be an object")
        target = body.get("target") or {}
        node = target.get("name")
        if not node:
            raise errors.invalid(
                "Binding", "", name, [("FieldValueRequired", "target.name", "Required value")]
            )
        with self.store.lock:
            old = self.store.get(rd.key, namespace, name)
            if old is None:
                raise errors.not_found(rd.plural, rd.group, name)
            want_uid = (body.get("metadata") or {}).get("uid")
            if want_uid and want_uid != old["metadata"].get("uid"):
                raise errors.conflict(
                    "pods", "", name, "Precondition failed: UID in precondition does not match"
                )
            if old["metadata"].get("deletionTimestamp"):
                raise errors.conflict(
                    "pods", "", name, "pod is being deleted, cannot be assigned to a host"
                )
            current = old["spec"].get("nodeName")
            if current:
                raise errors.conflict(
                    "pods", "", name, f'pod {name} is already assigned to node "{current}"'
                )
            spec = {**old["spec"], "nodeName": node}
            status = dict(old.get("status") or {})
            conds = [c for c in status.get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append(
                {
                    "type": "PodScheduled",
                    "status": "True",
                    "lastProbeTime": None,
                    "lastTransitionTime": self._now(),
                }
            )
            status["conditions"] = conds
            annotations = (body.get("metadata") or {}).get("annotations")
            meta = dict(old["metadata"])
            if annotations:
                meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}
            self.store.update(
                rd.key, {**old, "metadata": meta, "spec": spec, "status": status}, old
            )
        return errors.success_status(code=201)


def _selection(
    rd: ResourceDef, namespace: str | None, query: Mapping[str, str]
) -> tuple[LabelSelector, FieldSelector, str | None, str | None]:
    """Selectors of a list or watch, with the namespace and pod node they pin down.

    A field selector on metadata.namespace narrows a cluster-wide request to one namespace,
    and one on spec.nodeName lets pod requests use the store's per-node index.
    """
    labels = parse_label_selector(query.get("labelSelector", ""))
    fields = parse_field_selector(query.get("fieldSelector", ""), rd.field_labels)
    if namespace is None:
        namespace = fields.exact("metadata.namespace")
    node = (fields.exact("spec.nodeName") or None) if rd.plural == "pods" and not rd.group else None
    return labels, fields, namespace, node

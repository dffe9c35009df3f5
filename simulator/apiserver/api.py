"""The REST semantics of the API server, independent of HTTP: create, read, list, watch, update,
patch, delete, with the real server's codes, defaults, concurrency and deletion rules."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import conversion, errors, kinds, schema, serviceaccount
from .deletion import Deletion
from .errors import ApiError
from .objects import as_version, deep, rfc3339
from .reads import Reads
from .resources import ResourceDef, ResourceRegistry
from .store import Store
from .updates import Admit, Updates, Validate
from .watch import WatchStream

Obj = dict[str, Any]

JSON = "application/json"

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
class Core(Reads, Updates, Deletion):
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

"""Deletion as the real server does it: graceful pod deletion, finalizers, preconditions,
propagation policies, namespaces and CRDs, evictions — a part of `Core` kept apart."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from . import disruption, errors
from .errors import ApiError
from .objects import FOREGROUND, as_version, rfc3339
from .resources import ResourceDef, ResourceRegistry
from .store import Store

Obj = dict[str, Any]


class Deletion:
    """Mixed into `Core`, which provides the attributes below."""

    store: Store
    registry: ResourceRegistry
    clock: Callable[[], float]

    def list(self, rd: ResourceDef, namespace: str | None, query: Mapping[str, str]) -> Obj:
        raise NotImplementedError

    def evict(self, rd: ResourceDef, namespace: str, name: str, body: Any) -> Obj:
        """POST pods/NAME/eviction: a delete that respects PodDisruptionBudgets (429 if not)."""
        options = (body or {}).get("deleteOptions") or {} if isinstance(body, dict) else {}
        with self.store.lock:
            pod = self.store.get(rd.key, namespace, name)
            if pod is None:
                raise errors.not_found(rd.plural, rd.group, name)
            pdbs = self.store.objects("policy/poddisruptionbudgets", namespace)
            if pdbs and not pod["metadata"].get("deletionTimestamp"):
                blocking = disruption.blocking_budget(
                    pod, pdbs, self.store.objects(rd.key, namespace)
                )
                if blocking is not None:
                    raise ApiError(
                        429,
                        "TooManyRequests",
                        "Cannot evict pod as it would violate the pod's disruption budget.",
                        causes=[
                            {
                                "reason": "DisruptionBudget",
                                "message": f"The disruption budget {blocking} needs more healthy pods",
                            }
                        ],
                        retry_after=10,
                    )
            self.delete(
                rd, namespace, name, options, dry_run="All" in (options.get("dryRun") or [])
            )
        return errors.success_status(code=201)

    # --- delete --------------------------------------------------------------------------

    def delete(
        self,
        rd: ResourceDef,
        namespace: str,
        name: str,
        options: Mapping[str, Any],
        *,
        dry_run: bool = False,
    ) -> Obj:
        ns = namespace if rd.namespaced else ""
        with self.store.lock:
            old = self.store.get(rd.key, ns, name)
            if old is None:
                raise errors.not_found(rd.plural, rd.group, name)
            meta = old["metadata"]
            pre = options.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != meta.get("uid"):
                raise errors.conflict(
                    rd.plural,
                    rd.group,
                    name,
                    f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {meta.get('uid')}",
                )
            if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
                raise errors.conflict(
                    rd.plural,
                    rd.group,
                    name,
                    f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, ResourceVersion in object meta: {meta.get('resourceVersion')}",
                )
            policy = options.get("propagationPolicy")
            if policy is None and options.get("orphanDependents") is not None:
                policy = "Orphan" if options.get("orphanDependents") else "Background"
            if policy not in (None, "Orphan", "Background", "Foreground"):
                raise errors.invalid(
                    "DeleteOptions",
                    "",
                    "",
                    [
                        (
                            "FieldValueNotSupported",
                            "propagationPolicy",
                            f'Unsupported value: "{policy}"',
                        )
                    ],
                )
            if dry_run:
                return self._delete_answer(rd, old)
            if policy == "Orphan":
                self._orphan_dependents(str(meta.get("uid")))
            finalizers = list(meta.get("finalizers") or [])
            if (
                policy == "Foreground"
                and self.store.dependents(str(meta.get("uid")))
                and FOREGROUND not in finalizers
            ):
                finalizers.append(FOREGROUND)
            if rd.kind == "Namespace" and not rd.custom:
                return self._delete_namespace(rd, old)
            if rd.kind == "CustomResourceDefinition" and not rd.custom and not finalizers:
                self._delete_crd_contents(old)
            grace = self._grace_period(rd, old, options)
            if grace > 0 or finalizers:
                new_meta = dict(meta)
                if finalizers:
                    new_meta["finalizers"] = finalizers
                current = meta.get("deletionGracePeriodSeconds")
                if not meta.get("deletionTimestamp"):
                    new_meta["deletionTimestamp"] = rfc3339(self.clock() + grace)
                    new_meta["deletionGracePeriodSeconds"] = grace
                    if "generation" in meta:
                        new_meta["generation"] = int(meta["generation"]) + 1
                elif current is None or grace < int(current):
                    new_meta["deletionTimestamp"] = rfc3339(self.clock() + grace)
                    new_meta["deletionGracePeriodSeconds"] = grace
                if new_meta == meta:
                    return as_version(rd, old)
                stored = self.store.update(rd.key, {**old, "metadata": new_meta}, old)
                return as_version(rd, stored)
            if meta.get("deletionTimestamp") and meta.get("deletionGracePeriodSeconds"):
                # Cutting a graceful deletion short is written first (a MODIFIED event with
                # no grace left), then the object goes, as on the real server.
                now = {**meta, "deletionTimestamp": rfc3339(self.clock()),
                       "deletionGracePeriodSeconds": 0}  # fmt: skip
                old = self.store.update(rd.key, {**old, "metadata": now}, old)
            return self._delete_answer(rd, self._remove(rd, old))

    def _delete_answer(self, rd: ResourceDef, obj: Obj) -> Obj:
        """A pod answers itself, marked deleted now with no grace left (as the real server's
        pod registry returns it); every other kind, custom resources too, a `Status`."""
        if rd.kind == "Pod" and not rd.custom:
            meta = dict(obj["metadata"])
            meta.setdefault("deletionTimestamp", rfc3339(self.clock()))
            meta.setdefault("deletionGracePeriodSeconds", 0)
            return as_version(rd, {**obj, "metadata": meta})
        return errors.success_status(
            name=obj["metadata"]["name"],
            kind=rd.plural,
            group=rd.group,
            uid=str(obj["metadata"].get("uid", "")),
        )

    def _grace_period(self, rd: ResourceDef, obj: Obj, options: Mapping[str, Any]) -> int:
        """Only pods are deleted gracefully, and only once bound to a node and not terminal."""
        if rd.kind != "Pod" or rd.custom:
            return 0
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return 0
        grace = options.get("gracePeriodSeconds")
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        return max(0, int(grace))

    def _remove(self, rd: ResourceDef, obj: Obj) -> Obj:
        removed = self.store.delete(rd.key, obj)
        if rd.kind == "CustomResourceDefinition" and not rd.custom:
            self.registry.remove_crd(str(obj["metadata"]["name"]))
        return removed

    def _orphan_dependents(self, uid: str) -> None:
        for key, ns, name in self.store.dependents(uid):
            dep = self.store.get(key, ns, name)
            if dep is None:
                continue
            refs = [r for r in dep["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
            meta = {**dep["metadata"], "ownerReferences": refs}
            if not refs:
                meta.pop("ownerReferences")
            self.store.update(key, {**dep, "metadata": meta}, dep)

    def _delete_namespace(self, rd: ResourceDef, old: Obj) -> Obj:
        """Namespaces go Terminating; the collector empties and then removes them."""
        if old["metadata"].get("deletionTimestamp"):
            return old
        meta = {**old["metadata"], "deletionTimestamp": rfc3339(self.clock())}
        stored = self.store.update(
            rd.key, {**old, "metadata": meta, "status": {"phase": "Terminating"}}, old
        )
        return stored

    def _delete_crd_contents(self, crd: Obj) -> None:
        spec = crd.get("spec") or {}
        key = f"{spec.get('group', '')}/{(spec.get('names') or {}).get('plural', '')}"
        for obj in self.store.objects(key, None):
            self.store.delete(key, obj)

    def delete_collection(
        self,
        rd: ResourceDef,
        namespace: str | None,
        query: Mapping[str, str],
        options: Mapping[str, Any],
        *,
        dry_run: bool = False,
    ) -> Obj:
        listed = self.list(
            rd,
            namespace,
            {k: v for k, v in query.items() if k in ("labelSelector", "fieldSelector")},
        )
        for obj in listed["items"]:
            try:
                self.delete(
                    rd,
                    obj["metadata"].get("namespace", ""),
                    obj["metadata"]["name"],
                    options,
                    dry_run=dry_run,
                )
            except ApiError as e:
                if e.code != 404:
                    raise
        return listed

"""Admission webhooks (mutating, then validating): find the matching webhooks, POST an
AdmissionReview over verified TLS, apply the returned JSONPatch — the way kube-apiserver
calls them.

There is no cluster network, so a webhook's `clientConfig.service` is resolved to a loopback
address: first through `ServiceMap` entries set from Python, else through the Service object's
annotation `sim.image-sync.io/endpoint: "HOST:PORT"`. TLS is still verified against the
service DNS name `NAME.NAMESPACE.svc` with the webhook's `caBundle`."""

from __future__ import annotations

import base64
import http.client
import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from . import errors, patching
from .errors import ApiError
from .resources import ResourceDef
from .selectors import match_label_selector_object
from .store import Store
from .webhookclient import Target, WebhookClient

Obj = dict[str, Any]
ENDPOINT_ANNOTATION = "sim.image-sync.io/endpoint"
WEBHOOK_KEY = "admissionregistration.k8s.io/mutatingwebhookconfigurations"
VALIDATING_KEY = "admissionregistration.k8s.io/validatingwebhookconfigurations"
USER_INFO: Obj = {"username": "system:admin", "groups": ["system:masters", "system:authenticated"]}


@dataclass
class ServiceMap:
    """(namespace, name, port) → (host, port) on loopback; port None matches any port."""

    _entries: dict[tuple[str, str, int | None], tuple[str, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def set(
        self, namespace: str, name: str, host: str, port: int, service_port: int | None = None
    ) -> None:
        with self._lock:
            self._entries[(namespace, name, service_port)] = (host, port)

    def get(self, namespace: str, name: str, port: int) -> tuple[str, int] | None:
        with self._lock:
            return self._entries.get((namespace, name, port)) or self._entries.get(
                (namespace, name, None)
            )


def rule_matches(rule: Obj, operation: str, rd: ResourceDef, subresource: str) -> bool:
    ops = rule.get("operations") or []
    if "*" not in ops and operation not in ops:
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and rd.group not in groups:
        return False
    versions = rule.get("apiVersions") or []
    if "*" not in versions and rd.version not in versions:
        return False
    want = f"{rd.plural}/{subresource}" if subresource else rd.plural
    ok = False
    for res in rule.get("resources") or []:
        if res in ("*/*", want) or (res == "*" and not subresource):
            ok = True
        elif "/" in res:
            main, sub = res.split("/", 1)
            if (main == "*" and sub == subresource) or (
                main == rd.plural and sub == "*" and subresource
            ):
                ok = True
    if not ok:
        return False
    scope = rule.get("scope") or "*"
    return scope == "*" or (scope == "Namespaced") == rd.namespaced


@dataclass
class Admission:
    """Calls the mutating webhooks stored in `store` for an object being created."""

    store: Store
    services: ServiceMap = field(default_factory=ServiceMap)
    client: WebhookClient = field(default_factory=WebhookClient)

    def __call__(
        self, rd: ResourceDef, operation: str, obj: Obj, old: Obj | None, dry_run: bool
    ) -> Obj:
        configs = sorted(
            self.store.objects(WEBHOOK_KEY, ""), key=lambda c: str(c["metadata"]["name"])
        )
        hooks = [(c, h) for c in configs for h in c.get("webhooks") or []]
        if not hooks:
            return obj
        called: list[tuple[Obj, Obj]] = []
        for config, hook in hooks:
            if self._matches(hook, operation, rd, obj, old):
                before = json.dumps(obj, sort_keys=True)
                obj = self._call(config, hook, rd, operation, obj, old, dry_run)
                called.append((hook, json.loads(before)))
        if len(called) > 1:  # reinvocationPolicy: IfNeeded, once, if a later hook changed it
            for hook, seen in called:
                if hook.get("reinvocationPolicy") == "IfNeeded" and seen != obj:
                    config = next(c for c, h in hooks if h is hook)
                    obj = self._call(config, hook, rd, operation, obj, old, dry_run)
        return obj

    def wants(self, rd: ResourceDef, operation: str) -> bool:
        """Whether any webhook's rules name this operation on this resource (cheap, no I/O)."""
        for key in (WEBHOOK_KEY, VALIDATING_KEY):
            for config in self.store.objects(key, ""):
                for hook in config.get("webhooks") or []:
                    if any(rule_matches(r, operation, rd, "") for r in hook.get("rules") or []):
                        return True
        return False

    def validate(
        self, rd: ResourceDef, operation: str, obj: Obj, old: Obj | None, dry_run: bool
    ) -> None:
        """Call the matching validating webhooks on the final object (they cannot change it)."""
        configs = sorted(
            self.store.objects(VALIDATING_KEY, ""), key=lambda c: str(c["metadata"]["name"])
        )
        for config in configs:
            for hook in config.get("webhooks") or []:
                if self._matches(hook, operation, rd, obj, old):
                    self._call(config, hook, rd, operation, obj, old, dry_run, mutating=False)

    def _matches(
        self, hook: Obj, operation: str, rd: ResourceDef, obj: Obj, old: Obj | None
    ) -> bool:
        if not any(rule_matches(r, operation, rd, "") for r in hook.get("rules") or []):
            return False
        meta = obj.get("metadata") or {}
        if rd.namespaced:
            ns = self.store.get("/namespaces", "", str(meta.get("namespace", "")))
            labels = (ns or {}).get("metadata", {}).get("labels") or {}
            if not match_label_selector_object(hook.get("namespaceSelector"), labels):
                return False
        elif (
            rd.kind == "Namespace"
            and not rd.group
            and not match_label_selector_object(hook.get("namespaceSelector"), meta.get("labels"))
        ):
            return False
        sel = hook.get("objectSelector")
        if sel:
            new_ok = match_label_selector_object(sel, meta.get("labels"))
            old_ok = old is not None and match_label_selector_object(
                sel, (old.get("metadata") or {}).get("labels")
            )
            if not (new_ok or old_ok):
                return False
        return True

    def _target(self, hook: Obj, timeout: int) -> Target:
        cc = hook.get("clientConfig") or {}
        if cc.get("url"):
            u = urlsplit(str(cc["url"]))
            path = u.path or "/"
            if u.query:
                path += "?" + u.query
            return Target(u.hostname or "", u.port or 443, u.hostname or "", path, str(cc["url"]))
        svc = cc.get("service") or {}
        ns, name = str(svc.get("namespace", "")), str(svc.get("name", ""))
        port = int(svc.get("port") or 443)
        path = str(svc.get("path") or "/")
        server_name = f"{name}.{ns}.svc"
        url = f"https://{server_name}:{port}{path}"
        mapped = self.services.get(ns, name, port)
        if mapped is None:
            svc_obj = self.store.get("/services", ns, name)
            if svc_obj is None:
                raise ConnectionError(f'service "{name}" not found')
            endpoint = (
                (svc_obj["metadata"].get("annotations") or {}).get(ENDPOINT_ANNOTATION) or ""
            ).strip()
            if not endpoint or ":" not in endpoint:
                raise ConnectionError(
                    f'no endpoints available for service "{name}" (set annotation {ENDPOINT_ANNOTATION})'
                )
            host, _, p = endpoint.rpartition(":")
            mapped = (host.strip("[]"), int(p))
        return Target(mapped[0], mapped[1], server_name, path, url)

    def review(
        self, rd: ResourceDef, operation: str, obj: Obj, old: Obj | None, dry_run: bool
    ) -> Obj:
        """The AdmissionReview request kube-apiserver sends for this write."""
        meta = obj.get("metadata") or {}
        gvk = {"group": rd.group, "version": rd.version, "kind": rd.kind}
        gvr = {"group": rd.group, "version": rd.version, "resource": rd.plural}
        options_kind = {
            "CREATE": "CreateOptions",
            "UPDATE": "UpdateOptions",
            "DELETE": "DeleteOptions",
        }.get(operation, "CreateOptions")
        request: Obj = {
            "uid": str(uuid.uuid4()),
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": str(meta.get("name", "")),
            "operation": operation,
            "userInfo": USER_INFO,
            "object": obj,
            "oldObject": old,
            "dryRun": dry_run,
            "options": {"kind": options_kind, "apiVersion": "meta.k8s.io/v1"},
        }
        if rd.namespaced:
            request["namespace"] = str(meta.get("namespace", ""))
        return {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": request}

    def _call(
        self,
        config: Obj,
        hook: Obj,
        rd: ResourceDef,
        operation: str,
        obj: Obj,
        old: Obj | None,
        dry_run: bool,
        *,
        mutating: bool = True,
    ) -> Obj:
        name = str(hook.get("name", ""))
        if dry_run and hook.get("sideEffects") not in ("None", "NoneOnDryRun"):
            raise errors.bad_request(f'admission webhook "{name}" does not support dry run')
        timeout = int(hook.get("timeoutSeconds") or 10)
        fail = (hook.get("failurePolicy") or "Fail") == "Fail"
        review = self.review(rd, operation, obj, old, dry_run)
        uid = review["request"]["uid"]
        try:
            target = self._target(hook, timeout)
            bundle = (hook.get("clientConfig") or {}).get("caBundle")
            answer = self.client.post(target, bundle, review, timeout)
        except (OSError, ValueError, http.client.HTTPException) as e:
            if fail:
                where = locals().get("target")
                url = (
                    where.url
                    if isinstance(where, Target)
                    else str((hook.get("clientConfig") or {}).get("url", ""))
                )
                raise errors.internal(
                    f'failed calling webhook "{name}": failed to call webhook: Post "{url}?timeout={timeout}s": {e}'
                ) from e
            return obj
        response = answer.get("response") if isinstance(answer, dict) else None
        if not isinstance(response, dict) or response.get("uid") != uid:
            if fail:
                raise errors.internal(
                    f'failed calling webhook "{name}": received invalid webhook response: expected response.uid="{uid}"'
                )
            return obj
        if not response.get("allowed"):
            result = response.get("status") or {}
            code = int(result.get("code") or 403)
            message = str(result.get("message") or "")
            raise ApiError(
                code,
                str(result.get("reason") or "Forbidden"),
                f'admission webhook "{name}" denied the request: {message}'.rstrip(": "),
            )
        patch = response.get("patch")
        if patch and mutating:
            if response.get("patchType") != "JSONPatch":
                if fail:
                    raise errors.internal(
                        f'failed calling webhook "{name}": unsupported patch type {response.get("patchType")!r}'
                    )
                return obj
            try:
                ops = json.loads(base64.b64decode(patch))
                obj = patching.json_patch(obj, ops)
            except (ValueError, ApiError) as e:
                if fail:
                    raise errors.internal(f'failed calling webhook "{name}": {e}') from e
        return obj

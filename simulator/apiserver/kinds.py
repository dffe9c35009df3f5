"""Per-kind defaulting and validation the real server does before storing (pods, namespaces, CRDs)."""

from __future__ import annotations

import base64
import re
from typing import Any

from .errors import invalid

Obj = dict[str, Any]

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME_KINDS = {"Namespace", "Service"}
_FREE_NAME_KINDS = {"Event"}
# Built-in kinds whose objects carry `metadata.generation` (custom resources all do); the
# others (pods, nodes, config maps, leases, events, ...) have none on the real server.
GENERATION_KINDS = frozenset(
    {
        "CustomResourceDefinition",
        "Deployment",
        "DaemonSet",
        "StatefulSet",
        "ReplicaSet",
        "Job",
        "CronJob",
        "PodDisruptionBudget",
        "MutatingWebhookConfiguration",
        "ValidatingWebhookConfiguration",
        "NetworkPolicy",
        "PriorityClass",
    }
)
# The data keys a Secret of these types must hold.
SECRET_KEYS = {
    "kubernetes.io/tls": ("tls.crt", "tls.key"),
    "kubernetes.io/dockerconfigjson": (".dockerconfigjson",),
    "kubernetes.io/dockercfg": (".dockercfg",),
}
NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"


def default_pull_policy(image: str) -> str:
    """`Always` for `:latest` or untagged references, `IfNotPresent` otherwise (real defaulting)."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "Always"
    return "Always" if last.rsplit(":", 1)[1] == "latest" else "IfNotPresent"


def _qos(spec: Obj) -> str:
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in lim or req.get(r, lim.get(r)) != lim.get(r):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def default_pod(pod: Obj) -> None:
    """The defaults the real API server fills in on decode, so webhooks see what they would."""
    spec = pod.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    sa = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = sa
    spec["serviceAccount"] = sa
    for field in ("initContainers", "containers"):
        for c in spec.get(field) or []:
            if isinstance(c, dict):
                c.setdefault("imagePullPolicy", default_pull_policy(str(c.get("image", ""))))
                c.setdefault("terminationMessagePath", "/dev/termination-log")
                c.setdefault("terminationMessagePolicy", "File")
                c.setdefault("resources", {})
                for port in c.get("ports") or []:
                    if isinstance(port, dict):
                        port.setdefault("protocol", "TCP")
    # DefaultTolerationSeconds: unless a toleration already covers the taint.
    tolerations = spec.setdefault("tolerations", [])
    for taint in (NOT_READY, UNREACHABLE):
        if not any(_tolerates(t, taint) for t in tolerations if isinstance(t, dict)):
            tolerations.append(
                {
                    "key": taint,
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                }
            )
    status = pod.setdefault("status", {})
    status.setdefault("phase", "Pending")
    status["qosClass"] = _qos(spec)
    default_pod_status(pod)


def _tolerates(toleration: Obj, taint_key: str) -> bool:
    """Whether `toleration` tolerates the NoExecute taint `taint_key`."""
    if toleration.get("effect") not in (None, "", "NoExecute"):
        return False
    if toleration.get("operator") == "Exists":
        return toleration.get("key") in (None, "", taint_key)
    return toleration.get("key") == taint_key


def default_pod_status(pod: Obj) -> None:
    """A container status always has `state` and `lastState` (empty when unknown), as the
    real server's types serialize them."""
    status = pod.get("status")
    if not isinstance(status, dict):
        return
    for key in ("initContainerStatuses", "containerStatuses", "ephemeralContainerStatuses"):
        for entry in status.get(key) or []:
            if isinstance(entry, dict):
                entry.setdefault("state", {})
                entry.setdefault("lastState", {})


def default_node(node: Obj) -> None:
    """A Node's spec and the status fields the real server's types always serialize."""
    node.setdefault("spec", {})
    status = node.setdefault("status", {})
    status.setdefault("daemonEndpoints", {"kubeletEndpoint": {"Port": 0}})
    info = status.setdefault("nodeInfo", {})
    for field in NODE_INFO_FIELDS:
        info.setdefault(field, "")


NODE_INFO_FIELDS = (
    "machineID",
    "systemUUID",
    "bootID",
    "kernelVersion",
    "osImage",
    "containerRuntimeVersion",
    "kubeletVersion",
    "kubeProxyVersion",
    "operatingSystem",
    "architecture",
)


def default_event(event: Obj) -> None:
    """Core v1 Event fields the real server always serializes."""
    event.setdefault("eventTime", None)
    event.setdefault("reportingComponent", "")
    event.setdefault("reportingInstance", "")


def default_webhook_configuration(configuration: Obj, mutating: bool) -> None:
    """The admissionregistration/v1 defaults of each webhook and rule."""
    for hook in configuration.get("webhooks") or []:
        if not isinstance(hook, dict):
            continue
        hook.setdefault("failurePolicy", "Fail")
        hook.setdefault("matchPolicy", "Equivalent")
        hook.setdefault("namespaceSelector", {})
        hook.setdefault("objectSelector", {})
        hook.setdefault("timeoutSeconds", 10)
        if mutating:
            hook.setdefault("reinvocationPolicy", "Never")
        for rule in hook.get("rules") or []:
            if isinstance(rule, dict):
                rule.setdefault("scope", "*")


def default_namespace(ns: Obj) -> None:
    meta = ns["metadata"]
    meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
    ns.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    ns["status"] = {"phase": "Active"}


def default_crd(crd: Obj) -> None:
    spec = crd.setdefault("spec", {})
    names = spec.setdefault("names", {})
    names.setdefault("singular", str(names.get("kind", "")).lower())
    names.setdefault("listKind", f"{names.get('kind', '')}List")
    for v in spec.get("versions") or []:
        v.setdefault("served", True)


def crd_status(crd: Obj, now: str) -> Obj:
    names = dict(crd["spec"]["names"])
    return {
        "acceptedNames": names,
        "conditions": [
            {
                "type": "NamesAccepted",
                "status": "True",
                "reason": "NoConflicts",
                "message": "no conflicts found",
                "lastTransitionTime": now,
            },
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
                "lastTransitionTime": now,
            },
        ],
        "storedVersions": [
            v["name"] for v in crd["spec"].get("versions") or [] if v.get("storage")
        ],
    }


def normalize(kind: str, obj: Obj) -> None:
    """On every write: the fields the real server's types always serialize (no-ops on what
    `apply_defaults` already filled, so shared stored parts are not changed)."""
    if kind == "Pod":
        default_pod_status(obj)
    elif kind == "Node":
        default_node(obj)
    elif kind == "Event":
        default_event(obj)
    elif kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        default_webhook_configuration(obj, mutating=kind.startswith("Mutating"))


def apply_defaults(kind: str, obj: Obj) -> None:
    if kind == "Pod":
        default_pod(obj)
    elif kind == "Node":
        default_node(obj)
    elif kind == "Event":
        default_event(obj)
    elif kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        default_webhook_configuration(obj, mutating=kind.startswith("Mutating"))
    elif kind == "Namespace":
        default_namespace(obj)
    elif kind == "PriorityClass":
        obj.setdefault("preemptionPolicy", "PreemptLowerPriority")
    elif kind == "CustomResourceDefinition":
        default_crd(obj)
    elif kind == "Secret":
        if not obj.get("type"):
            obj["type"] = "Opaque"
        string_data = obj.pop("stringData", None) or {}
        if string_data:
            data = obj.setdefault("data", {})
            for key, value in string_data.items():
                data[key] = base64.b64encode(str(value).encode()).decode()
    elif kind == "Service":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))


def validate_name(kind: str, group: str, name: str) -> None:
    if kind in _FREE_NAME_KINDS or not name:
        return
    if kind in _LABEL_NAME_KINDS:
        ok, what = len(name) <= 63 and bool(_LABEL.match(name)), "a lowercase RFC 1123 label"
    else:
        ok, what = (
            len(name) <= 253 and bool(_SUBDOMAIN.match(name)),
            "a lowercase RFC 1123 subdomain",
        )
    if not ok:
        raise invalid(
            kind,
            group,
            name,
            [("FieldValueInvalid", "metadata.name", f'Invalid value: "{name}": must be {what}')],
        )


def validate(kind: str, group: str, obj: Obj) -> None:
    """The checks image-sync could trip over; the real server checks far more."""
    name = str(obj["metadata"].get("name", ""))
    validate_name(kind, group, name)
    for key, value in (obj["metadata"].get("labels") or {}).items():
        if not isinstance(value, str) or len(value) > 63:
            raise invalid(
                kind,
                group,
                name,
                [
                    (
                        "FieldValueInvalid",
                        "metadata.labels",
                        f'Invalid value: "{value}": label {key} must be a string of at most 63 characters',
                    )
                ],
            )
    if kind == "Secret":
        data = obj.get("data") or {}
        missing = [key for key in SECRET_KEYS.get(str(obj.get("type")), ()) if key not in data]
        if missing:
            raise invalid(
                kind,
                group,
                name,
                [("FieldValueRequired", f"data[{key}]", "Required value") for key in missing],
            )
    if kind == "Pod":
        spec = obj.get("spec") or {}
        containers = spec.get("containers") or []
        if not containers:
            raise invalid(
                kind, group, name, [("FieldValueRequired", "spec.containers", "Required value")]
            )
        for field in ("initContainers", "containers"):
            for i, c in enumerate(spec.get(field) or []):
                if not c.get("name"):
                    raise invalid(
                        kind,
                        group,
                        name,
                        [("FieldValueRequired", f"spec.{field}[{i}].name", "Required value")],
                    )
                if not c.get("image"):
                    raise invalid(
                        kind,
                        group,
                        name,
                        [("FieldValueRequired", f"spec.{field}[{i}].image", "Required value")],
                    )
                policy = c.get("imagePullPolicy")
                if policy not in ("Always", "IfNotPresent", "Never"):
                    raise invalid(
                        kind,
                        group,
                        name,
                        [
                            (
                                "FieldValueNotSupported",
                                f"spec.{field}[{i}].imagePullPolicy",
                                f'Unsupported value: "{policy}": supported values: "Always", "IfNotPresent", "Never"',
                            )
                        ],
                    )
    elif kind == "CustomResourceDefinition":
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        want = f"{names.get('plural', '')}.{spec.get('group', '')}"
        if name != want:
            raise invalid(
                kind,
                group,
                name,
                [
                    (
                        "FieldValueInvalid",
                        "metadata.name",
                        f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
                    )
                ],
            )
        if not names.get("kind") or not spec.get("versions"):
            raise invalid(
                kind,
                group,
                name,
                [("FieldValueRequired", "spec", "Required value: names.kind and versions")],
            )
        if spec.get("scope") not in ("Namespaced", "Cluster"):
            raise invalid(
                kind,
                group,
                name,
                [
                    (
                        "FieldValueNotSupported",
                        "spec.scope",
                        'Unsupported value: supported values: "Cluster", "Namespaced"',
                    )
                ],
            )


_POD_MUTABLE = "spec.containers[*].image,spec.initContainers[*].image,spec.activeDeadlineSeconds,spec.tolerations (only additions to existing tolerations),spec.terminationGracePeriodSeconds (allow it to be set to 1 if it was previously negative)"


def validate_pod_update(new: Obj, old: Obj) -> None:
    """Pod specs are immutable except images, activeDeadlineSeconds, tolerations and gates."""

    def normalized(spec: Obj, images_from: Obj) -> Obj:
        out = dict(spec)
        for field in ("containers", "initContainers"):
            mine = [dict(c) for c in out.get(field) or []]
            theirs = images_from.get(field) or []
            for i, c in enumerate(mine):
                if i < len(theirs):
                    c["image"] = theirs[i].get("image")
            out[field] = mine
        for field in ("activeDeadlineSeconds", "tolerations", "schedulingGates"):
            out.pop(field, None)
        return out

    new_spec, old_spec = new.get("spec") or {}, old.get("spec") or {}
    if normalized(new_spec, old_spec) != normalized(old_spec, old_spec):
        name = str(new["metadata"].get("name", ""))
        raise invalid(
            "Pod",
            "",
            name,
            [
                (
                    "FieldValueForbidden",
                    "spec",
                    f"Forbidden: pod updates may not change fields other than {_POD_MUTABLE}",
                )
            ],
        )


ADMIN = {"username": "system:admin", "groups": ["system:masters", "system:authenticated"]}


def review_answer(kind: str, body: Obj) -> Obj:
    """The answer to an access or identity review: there is no authorization here, so every
    request is allowed and every caller is `system:admin`."""
    out = dict(body)
    if kind == "SelfSubjectReview":
        out["status"] = {"userInfo": ADMIN}
    elif kind == "SelfSubjectRulesReview":
        out["status"] = {
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": False,
        }
    else:
        out["status"] = {
            "allowed": True,
            "reason": "the simulated API server authorizes every request",
        }
    return out

"""One table of resource definitions drives routing, storage, discovery and defaults."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .schema import validator_for

Obj = dict[str, Any]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceDef:
    """What the server knows about one resource: names, scope, subresources."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status: bool = False
    binding: bool = False
    review: bool = False  # create-only, never stored: access and token reviews
    custom: bool = False
    field_labels: tuple[str, ...] = ()
    printer_columns: tuple[dict[str, Any], ...] = ()
    storage_version: str = ""
    storage_group: str | None = None  # stored with another group's objects (events.k8s.io)
    # A custom resource version's openAPIV3Schema, and its validator (schema.py).
    schema: Mapping[str, Any] | None = field(default=None, compare=False)
    validator: Any = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """Storage key: one store per group and plural, whatever the version."""
        group = self.group if self.storage_group is None else self.storage_group
        return f"{group}/{self.plural}"

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()

    def discovery(self) -> list[Obj]:
        """APIResource entries (the resource and its subresources) for discovery."""
        main: Obj = {
            "name": self.plural,
            "singularName": self.singular_name,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": ["create"] if self.review else list(ALL_VERBS),
        }
        if self.short_names:
            main["shortNames"] = list(self.short_names)
        if self.categories:
            main["categories"] = list(self.categories)
        out = [main]
        if self.status:
            out.append(
                {
                    "name": f"{self.plural}/status",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": self.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
        if self.binding:
            out.append(
                {
                    "name": f"{self.plural}/eviction",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "group": "policy",
                    "version": "v1",
                    "kind": "Eviction",
                    "verbs": ["create"],
                }
            )
            out.append(
                {
                    "name": f"{self.plural}/binding",
                    "singularName": "",
                    "namespaced": self.namespaced,
                    "kind": "Binding",
                    "verbs": ["create"],
                }
            )
        return out


_POD_FIELDS = (
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
)
_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)


def builtin_resources() -> list[ResourceDef]:
    """The built-in kinds the simulator serves (generic storage for all of them)."""
    r = ResourceDef
    return [
        r(
            "",
            "v1",
            "namespaces",
            "Namespace",
            False,
            short_names=("ns",),
            status=True,
            field_labels=("status.phase",),
        ),
        r(
            "",
            "v1",
            "nodes",
            "Node",
            False,
            short_names=("no",),
            status=True,
            field_labels=("spec.unschedulable",),
        ),
        r(
            "",
            "v1",
            "pods",
            "Pod",
            True,
            short_names=("po",),
            categories=("all",),
            status=True,
            binding=True,
            field_labels=_POD_FIELDS,
        ),
        r("", "v1", "events", "Event", True, short_names=("ev",), field_labels=_EVENT_FIELDS),
        r("", "v1", "configmaps", "ConfigMap", True, short_names=("cm",)),
        r("", "v1", "secrets", "Secret", True, field_labels=("type",)),
        r(
            "",
            "v1",
            "services",
            "Service",
            True,
            short_names=("svc",),
            categories=("all",),
            status=True,
        ),
        r("", "v1", "serviceaccounts", "ServiceAccount", True, short_names=("sa",)),
        r("", "v1", "endpoints", "Endpoints", True, short_names=("ep",)),
        r(
            "",
            "v1",
            "persistentvolumeclaims",
            "PersistentVolumeClaim",
            True,
            short_names=("pvc",),
            status=True,
        ),
        r("", "v1", "resourcequotas", "ResourceQuota", True, short_names=("quota",), status=True),
        r("", "v1", "limitranges", "LimitRange", True, short_names=("limits",)),
        r("events.k8s.io", "v1", "events", "Event", True, short_names=("ev",), storage_group=""),
        r("coordination.k8s.io", "v1", "leases", "Lease", True),
        r(
            "scheduling.k8s.io",
            "v1",
            "priorityclasses",
            "PriorityClass",
            False,
            short_names=("pc",),
        ),
        r(
            "admissionregistration.k8s.io",
            "v1",
            "mutatingwebhookconfigurations",
            "MutatingWebhookConfiguration",
            False,
        ),
        r(
            "admissionregistration.k8s.io",
            "v1",
            "validatingwebhookconfigurations",
            "ValidatingWebhookConfiguration",
            False,
        ),
        r(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            False,
            short_names=("crd", "crds"),
            status=True,
        ),
        r(
            "apps",
            "v1",
            "deployments",
            "Deployment",
            True,
            short_names=("deploy",),
            categories=("all",),
            status=True,
        ),
        r(
            "apps",
            "v1",
            "daemonsets",
            "DaemonSet",
            True,
            short_names=("ds",),
            categories=("all",),
            status=True,
        ),
        r(
            "apps",
            "v1",
            "statefulsets",
            "StatefulSet",
            True,
            short_names=("sts",),
            categories=("all",),
            status=True,
        ),
        r(
            "apps",
            "v1",
            "replicasets",
            "ReplicaSet",
            True,
            short_names=("rs",),
            categories=("all",),
            status=True,
        ),
        r("batch", "v1", "jobs", "Job", True, categories=("all",), status=True),
        r(
            "batch",
            "v1",
            "cronjobs",
            "CronJob",
            True,
            short_names=("cj",),
            categories=("all",),
            status=True,
        ),
        r(
            "policy",
            "v1",
            "poddisruptionbudgets",
            "PodDisruptionBudget",
            True,
            short_names=("pdb",),
            status=True,
        ),
        r("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
        r("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
        r("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
        r("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
        r(
            "networking.k8s.io",
            "v1",
            "networkpolicies",
            "NetworkPolicy",
            True,
            short_names=("netpol",),
        ),
        *(
            r(group, "v1", plural, kind, namespaced, review=True)
            for group, plural, kind, namespaced in (
                (
                    "authorization.k8s.io",
                    "selfsubjectaccessreviews",
                    "SelfSubjectAccessReview",
                    False,
                ),
                ("authorization.k8s.io", "subjectaccessreviews", "SubjectAccessReview", False),
                (
                    "authorization.k8s.io",
                    "selfsubjectrulesreviews",
                    "SelfSubjectRulesReview",
                    False,
                ),
                (
                    "authorization.k8s.io",
                    "localsubjectaccessreviews",
                    "LocalSubjectAccessReview",
                    True,
                ),
                ("authentication.k8s.io", "selfsubjectreviews", "SelfSubjectReview", False),
            )
        ),
    ]


def crd_resources(crd: Obj) -> list[ResourceDef]:
    """The resource definitions a CustomResourceDefinition declares (one per served version)."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = str(spec.get("group", ""))
    namespaced = spec.get("scope") == "Namespaced"
    versions = spec.get("versions") or []
    storage = next((str(v.get("name")) for v in versions if v.get("storage")), "")
    out = []
    for v in versions:
        if not v.get("served", True):
            continue
        openapi_schema = (v.get("schema") or {}).get("openAPIV3Schema")
        out.append(
            ResourceDef(
                group=group,
                version=str(v.get("name")),
                plural=str(names.get("plural", "")),
                kind=str(names.get("kind", "")),
                namespaced=namespaced,
                singular=str(names.get("singular", "")),
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status="status" in (v.get("subresources") or {}),
                custom=True,
                printer_columns=tuple(v.get("additionalPrinterColumns") or ()),
                storage_version=storage,
                schema=openapi_schema,
                validator=validator_for(openapi_schema),
            )
        )
    return out


@dataclass
class ResourceRegistry:
    """Built-in plus CRD-defined resources, looked up by (group, version, plural)."""

    _by_gvr: dict[tuple[str, str, str], ResourceDef] = field(default_factory=dict)
    _crds: dict[str, list[ResourceDef]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for rd in builtin_resources():
            self._by_gvr[(rd.group, rd.version, rd.plural)] = rd

    def lookup(self, group: str, version: str, plural: str) -> ResourceDef | None:
        return self._by_gvr.get((group, version, plural))

    def all(self) -> list[ResourceDef]:
        with self._lock:
            return list(self._by_gvr.values())

    def group_versions(self) -> dict[str, list[str]]:
        """Group → versions, built-in groups first, preferred version first."""
        out: dict[str, list[str]] = {}
        for rd in self.all():
            versions = out.setdefault(rd.group, [])
            if rd.version not in versions:
                versions.append(rd.version)
        for group, versions in out.items():
            crd = next((d for d in self.all() if d.group == group and d.custom), None)
            if crd is not None and crd.storage_version in versions:
                versions.remove(crd.storage_version)
                versions.insert(0, crd.storage_version)
        return out

    def by_group_version(self, group: str, version: str) -> list[ResourceDef]:
        return [rd for rd in self.all() if rd.group == group and rd.version == version]

    def set_crd(self, crd: Obj) -> None:
        """Serve (or re-serve, after an update) the resources of a CRD."""
        name = str(crd["metadata"]["name"])
        defs = crd_resources(crd)
        with self._lock:
            for old in self._crds.pop(name, []):
                self._by_gvr.pop((old.group, old.version, old.plural), None)
            for rd in defs:
                self._by_gvr[(rd.group, rd.version, rd.plural)] = rd
            self._crds[name] = defs

    def remove_crd(self, name: str) -> list[ResourceDef]:
        with self._lock:
            defs = self._crds.pop(name, [])
            for old in defs:
                self._by_gvr.pop((old.group, old.version, old.plural), None)
            return defs


def by_key(registry: ResourceRegistry, key: str) -> ResourceDef | None:
    """A served definition with this storage key (group/plural), the storage owner first."""
    defs = [rd for rd in registry.all() if rd.key == key]
    return next((rd for rd in defs if rd.storage_group is None), defs[0] if defs else None)

"""Pod templates of workload objects: which kinds carry them, where, and what they teach.

A Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or CronJob says which images its pods
will run and where they may be scheduled before any of its pods exists; so does a custom
kind such as Kubeflow's PyTorchJob (`spec.pytorchReplicaSpecs.*.template`), named in the
configuration with the paths of its pod templates. Pure: objects as JSON dicts in, typed
values out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from imagesync.matching import RegistryPrefix, is_managed
from imagesync.names import ANNOTATION_ENABLED

CONTAINER_SECTIONS = ("initContainers", "containers")


@dataclass(frozen=True, slots=True)
class TemplateKind:
    """A kind of object that holds pod templates, and the dotted paths to them (`*` = every
    value of a mapping or item of a list)."""

    api_version: str  # group/version, e.g. apps/v1
    kind: str
    resource: str  # the plural the API serves it under
    paths: tuple[str, ...]

    @property
    def group(self) -> str:
        return self.api_version.partition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.partition("/")[2]


BUILTIN_KINDS: tuple[TemplateKind, ...] = (
    TemplateKind("apps/v1", "Deployment", "deployments", ("spec.template",)),
    TemplateKind("apps/v1", "StatefulSet", "statefulsets", ("spec.template",)),
    TemplateKind("apps/v1", "DaemonSet", "daemonsets", ("spec.template",)),
    TemplateKind("apps/v1", "ReplicaSet", "replicasets", ("spec.template",)),
    TemplateKind("batch/v1", "Job", "jobs", ("spec.template",)),
    TemplateKind("batch/v1", "CronJob", "cronjobs", ("spec.jobTemplate.spec.template",)),
)


class PodTemplate(NamedTuple):
    """One pod template and how many pods of it are wanted (None: one per eligible node)."""

    template: Mapping[str, Any]
    replicas: int | None


def parse_template_kind(value: Any) -> TemplateKind:
    """`{apiVersion, kind, resource, templatePaths}` from the configuration."""
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a mapping with apiVersion, kind, templatePaths, got {value!r}")
    unknown = sorted(set(value) - {"apiVersion", "kind", "resource", "templatePaths"})
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(unknown)}")
    api_version = str(value.get("apiVersion") or "").strip()
    group, _, version = api_version.partition("/")
    if not group or not version or "/" in version:
        raise ValueError(f"apiVersion must be group/version, got {api_version!r}")
    kind = str(value.get("kind") or "").strip()
    if not kind:
        raise ValueError("kind is required")
    paths = value.get("templatePaths")
    if isinstance(paths, str):
        paths = [paths]
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
        raise ValueError(f"templatePaths must be a list of dotted paths, got {paths!r}")
    if any(not part for path in paths for part in path.split(".")):
        raise ValueError(f"templatePaths must be dotted paths like spec.template, got {paths!r}")
    resource = str(value.get("resource") or "").strip() or kind.lower() + "s"
    return TemplateKind(api_version, kind, resource, tuple(p.strip() for p in paths))


def _walk(node: Any, parts: list[str], parent: Any) -> Iterator[tuple[Any, Any]]:
    """(value, the mapping holding it) at the end of `parts`."""
    if not parts:
        yield node, parent
        return
    head, rest = parts[0], parts[1:]
    if head == "*":
        if isinstance(node, Mapping):
            for key in sorted(node):
                yield from _walk(node[key], rest, node)
        elif isinstance(node, list):
            for item in node:
                yield from _walk(item, rest, node)
    elif isinstance(node, Mapping) and head in node:
        yield from _walk(node[head], rest, node)


def _count(holder: Any, *fields: str) -> int | None:
    if not isinstance(holder, Mapping):
        return None
    for name in fields:
        value = holder.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return max(value, 0)
    return None


def pod_templates(obj: Mapping[str, Any], kind: TemplateKind) -> list[PodTemplate]:
    """The pod templates of `obj` and the pods wanted of each: `replicas` (or a Job's
    `parallelism`) beside the template, 1 when unset; a DaemonSet's: None (every node)."""
    out: list[PodTemplate] = []
    for path in kind.paths:
        for template, holder in _walk(obj, path.split("."), None):
            if not isinstance(template, Mapping) or not isinstance(template.get("spec"), Mapping):
                continue
            replicas = None if kind.kind == "DaemonSet" else _count(holder, "replicas")
            if replicas is None and kind.kind != "DaemonSet":
                replicas = _count(holder, "parallelism")
                replicas = 1 if replicas is None else replicas
            out.append(PodTemplate(template, replicas))
    return out


def template_in_scope(template: Mapping[str, Any], mode: str) -> bool:
    """The pod annotation rule of the webhook, read from the template's metadata:
    `image-sync.io/enabled: "false"` opts out; in opt-in mode only `"true"` opts in."""
    annotations = (template.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(ANNOTATION_ENABLED) if isinstance(annotations, Mapping) else None
    enabled = value.strip().lower() if isinstance(value, str) else None
    if enabled in ("true", "false"):
        return enabled == "true"
    return mode != "opt-in"


def managed_images(template: Mapping[str, Any], registries: Iterable[RegistryPrefix]) -> list[str]:
    """Normalized images under a configured prefix, init containers first, each once."""
    spec = template.get("spec") or {}
    prefixes = tuple(registries)
    seen: dict[str, None] = {}
    for section in CONTAINER_SECTIONS:
        containers = spec.get(section) if isinstance(spec, Mapping) else None
        for container in containers if isinstance(containers, list) else ():
            image = container.get("image") if isinstance(container, Mapping) else None
            ref = is_managed(image, prefixes) if isinstance(image, str) else None
            if ref is not None:
                seen[ref.normalized()] = None
    return list(seen)

"""Reading rendered manifests as the cluster and components do: specs, args, selectors, roles."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from imagesync import config as config_module
from imagesync import names
from imagesync.cli import build_parser
from tests.manifests.render import all_of, find

NS = names.NAMESPACE_DEFAULT
OUR_IMAGE = names.IMAGE


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    if workload["kind"] == "CronJob":
        spec: dict[str, Any] = workload["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    else:
        spec = workload["spec"]["template"]["spec"]
    return spec


def workloads(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in {"Deployment", "Job", "CronJob"}]


def container(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [only] = pod_spec(find(objects, kind, name))["containers"]
    result: dict[str, Any] = only
    return result


def parse_args(args: list[str], env: dict[str, str]) -> Any:
    """Parse a container's args with the real `image-sync` parser ($(VAR) expanded as the kubelet does)."""
    expanded = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in args]
    return build_parser().parse_args(expanded)


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e for e in c.get("env") or []}


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels + matchExpressions) evaluated as Kubernetes does."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def bound_role(objects: list[dict[str, Any]], binding: dict[str, Any]) -> dict[str, Any]:
    """The Role (in the binding's namespace) or ClusterRole a binding grants."""
    kind, name = binding["roleRef"]["kind"], binding["roleRef"]["name"]
    namespace = binding["metadata"].get("namespace") if kind == "Role" else None
    [role] = [
        o
        for o in all_of(objects, kind)
        if o["metadata"]["name"] == name and o["metadata"].get("namespace") == namespace
    ]
    return role


def load_shipped_config(objects: list[dict[str, Any]], tmp_path: Path) -> config_module.Config:
    path = tmp_path / "config.yaml"
    path.write_text(find(objects, "ConfigMap", "image-sync-config")["data"]["config.yaml"])
    return config_module.load_config(str(path), environ={"POD_NAMESPACE": NS})

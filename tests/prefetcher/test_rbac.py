"""The prefetcher's RBAC grants exactly the API calls its adapter makes: no more, no less."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagesync.names import CACHED_IMAGE_PLURAL
from imagesync.templates import BUILTIN_KINDS
from prefetcher import kube

BASE = Path(__file__).resolve().parents[2] / "manifests" / "base"
SERVICE_ACCOUNT = "image-sync-prefetcher"


def _documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(BASE.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict))
    return docs


def _granted() -> set[tuple[str, str, str, str]]:
    """(group, resource, verb, scope) granted to the prefetcher's ServiceAccount."""
    docs = _documents()
    roles = {
        (d["kind"], d["metadata"]["name"]): d
        for d in docs
        if d.get("kind") in ("Role", "ClusterRole")
    }
    granted: set[tuple[str, str, str, str]] = set()
    for binding in docs:
        if binding.get("kind") not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        subjects = binding.get("subjects") or []
        if not any(
            s.get("kind") == "ServiceAccount" and s.get("name") == SERVICE_ACCOUNT for s in subjects
        ):
            continue
        ref = binding["roleRef"]
        role = roles.get((ref["kind"], ref["name"]))
        assert role is not None, (
            f"{binding['metadata']['name']} refers to a missing {ref['kind']} {ref['name']}"
        )
        scope = "cluster" if binding["kind"] == "ClusterRoleBinding" else "namespace"
        for rule in role.get("rules") or []:
            for group in rule.get("apiGroups") or [""]:
                for resource in rule.get("resources") or []:
                    for verb in rule.get("verbs") or []:
                        assert "*" not in (group, resource, verb), (
                            f"wildcard in {role['metadata']['name']}"
                        )
                        granted.add((group, resource, verb, scope))
    return granted


def _calls_in_adapter() -> set[tuple[str, str]]:
    """(resource, verb) of every `self._call(verb, resource, ...)` in prefetcher/kube.py,
    plus list + watch of each informer source."""
    tree = ast.parse(inspect.getsource(kube))
    namespace = vars(kube)
    calls: set[tuple[str, str]] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "_call"
            and len(node.args) >= 2
        ):
            verb = eval(compile(ast.Expression(node.args[0]), "kube.py", "eval"), namespace)
            resource = eval(compile(ast.Expression(node.args[1]), "kube.py", "eval"), namespace)
            calls.add((resource, verb))
    sources = ["nodes", CACHED_IMAGE_PLURAL, "pods", *(k.resource for k in BUILTIN_KINDS)]
    for resource in sources:  # the informer sources
        calls |= {(resource, "list"), (resource, "watch")}
    return calls


def test_declared_calls_match_the_adapter() -> None:
    declared = {(resource, verb) for _, resource, verb, _ in kube.RBAC_CALLS}
    assert declared == _calls_in_adapter()


def test_templates_are_only_listed_and_watched() -> None:
    """Read-only on workload kinds: learning from templates never writes them."""
    template_groups = {k.group for k in BUILTIN_KINDS}
    verbs = {verb for group, _, verb, _ in kube.RBAC_CALLS if group in template_groups}
    assert verbs == {"list", "watch"}
    resources = {res for group, res, _, _ in kube.RBAC_CALLS if group in template_groups}
    assert resources == {
        "deployments", "statefulsets", "daemonsets", "replicasets", "jobs", "cronjobs",
    }  # fmt: skip


def test_manifests_grant_exactly_the_calls() -> None:
    granted = _granted()
    if not granted:
        pytest.skip("manifests/base has no RBAC bound to the prefetcher's ServiceAccount yet")
    assert granted == set(kube.RBAC_CALLS)

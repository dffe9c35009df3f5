"""The prefetcher's RBAC grants exactly the API calls its adapter makes: no more, no less."""

from __future__ import annotations

import ast
import inspect

import pytest

from imagesync.names import CACHED_IMAGE_PLURAL, NAMESPACE_DEFAULT, POD_NAMESPACE_DEFAULT
from imagesync.templates import BUILTIN_KINDS
from prefetcher import kube, kubeimages
from tests.manifests.render import render

SERVICE_ACCOUNT = "image-sync-prefetcher"


def _granted(target: str = "base") -> set[tuple[str, str, str, str]]:
    """(group, resource, verb, scope) granted to the prefetcher's ServiceAccount by the
    objects `kubectl apply -k manifests/<target>` applies."""
    docs = render(target)
    roles = {
        (d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d
        for d in docs
        if d.get("kind") in ("Role", "ClusterRole")
    }
    scopes = {NAMESPACE_DEFAULT: "namespace", POD_NAMESPACE_DEFAULT: "pods"}
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
        namespace = binding["metadata"].get("namespace")
        role = roles.get((ref["kind"], namespace if ref["kind"] == "Role" else None, ref["name"]))
        assert role is not None, (
            f"{binding['metadata']['name']} refers to a missing {ref['kind']} {ref['name']}"
        )
        scope = "cluster" if binding["kind"] == "ClusterRoleBinding" else scopes[namespace]
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
    """(resource, verb) of every `self._call(verb, resource, ...)` and `self._send(verb,
    resource, ...)` in prefetcher/kube.py and prefetcher/kubeimages.py (but the one inside
    `_send`, which forwards its own), plus list + watch of each informer source."""
    calls: set[tuple[str, str]] = set()
    for module in (kube, kubeimages):
        tree = ast.parse(inspect.getsource(module))
        namespace = vars(module)
        methods = [
            node
            for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name != "_send"
        ]
        for method in methods:
            for node in ast.walk(method):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("_call", "_send")
                    and len(node.args) >= 2
                ):
                    verb = eval(compile(ast.Expression(node.args[0]), "kube", "eval"), namespace)
                    resource = eval(
                        compile(ast.Expression(node.args[1]), "kube", "eval"), namespace
                    )
                    calls.add((resource, verb))
    sources = ["nodes", CACHED_IMAGE_PLURAL, "pods", *(k.resource for k in BUILTIN_KINDS)]
    for resource in sources:  # the informer sources
        calls |= {(resource, "list"), (resource, "watch")}
    return calls


def test_declared_calls_match_the_adapter() -> None:
    declared = {
        (resource, verb) for _, resource, verb, _ in kube.RBAC_CALLS | kube.STARTUP_TAINT_CALLS
    }
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
    assert granted, "manifests/base binds no RBAC to the prefetcher's ServiceAccount"
    assert granted == set(kube.RBAC_CALLS)


def test_only_the_startup_taint_overlay_may_patch_nodes() -> None:
    assert ("", "nodes", "patch", "cluster") in kube.STARTUP_TAINT_CALLS
    assert not kube.STARTUP_TAINT_CALLS & kube.RBAC_CALLS
    assert _granted("overlays/startup-taint") == set(kube.RBAC_CALLS | kube.STARTUP_TAINT_CALLS)


@pytest.mark.parametrize("target", ["base", "overlays/startup-taint"])
def test_the_startup_taint_is_configured_where_it_may_be_removed(target: str) -> None:
    [deployment] = [
        d
        for d in render(target)
        if d["kind"] == "Deployment" and d["metadata"]["name"] == SERVICE_ACCOUNT
    ]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container.get("env") or []}
    may_patch = ("", "nodes", "patch", "cluster") in _granted(target)
    assert bool(env.get("IMAGE_SYNC_STARTUP_TAINT")) == may_patch

"""The RBAC the manifests grant matches the API calls the code makes, and no more."""

from __future__ import annotations

import re
from typing import Any

import pytest

from imagesync import names
from prefetcher.kube import STARTUP_TAINT_CALLS
from tests.manifests.reading import NS, bound_role
from tests.manifests.render import ROOT, all_of, find

# Client method suffix -> (API group, resource). Only the kubernetes client's own methods.
RESOURCES = {
    "namespaced_pod": ("", "pods"),
    "pod_for_all_namespaces": ("", "pods"),
    "node": ("", "nodes"),
    "namespace": ("", "namespaces"),
    "namespaced_event": ("", "events"),
    "namespaced_secret": ("", "secrets"),
    "namespaced_lease": ("coordination.k8s.io", "leases"),
    "cluster_custom_object": (names.GROUP, names.CACHED_IMAGE_PLURAL),
    "cluster_custom_object_status": (names.GROUP, f"{names.CACHED_IMAGE_PLURAL}/status"),
    "mutating_webhook_configuration": ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
    "validating_webhook_configuration": ("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
}  # fmt: skip


VERBS = {"read": "get", "get": "get", "list": "list", "create": "create", "patch": "patch",
         "replace": "update", "delete": "delete"}  # fmt: skip


CALL = re.compile(r"\.(read|get|list|create|patch|replace|delete)_(\w+?)(?:_with_http_info)?\b")


def used_permissions(package: str) -> set[tuple[str, str, str]]:
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for verb, suffix in CALL.findall(path.read_text()):
            if suffix in RESOURCES:
                group, resource = RESOURCES[suffix]
                found.add((group, resource, VERBS[verb]))
    return found


def granted(
    objects: list[dict[str, Any]], account: str, namespace: str | None = None
) -> list[dict[str, Any]]:
    """The rules `account` holds (only those of Roles in `namespace`, when given)."""
    rules = []
    for binding in all_of(objects, "RoleBinding") + all_of(objects, "ClusterRoleBinding"):
        if namespace is not None and binding["metadata"].get("namespace") != namespace:
            continue
        if any(s["name"] == account for s in binding["subjects"]):
            rules += bound_role(objects, binding)["rules"]
    return rules


def allows(
    rules: list[dict[str, Any]], group: str, resource: str, verb: str, name: str = ""
) -> bool:
    return any(
        group in r["apiGroups"]
        and resource in r["resources"]
        and verb in r["verbs"]
        and (not r.get("resourceNames") or (name and name in r["resourceNames"]))
        for r in rules
    )


@pytest.mark.parametrize(
    ("package", "account"),
    [
        ("webhook", "image-sync-webhook"),
        ("prefetcher", "image-sync-prefetcher"),
        ("certs", "image-sync-certs"),
    ],
)
def test_rbac_grants_every_call_the_code_makes(
    base: list[dict[str, Any]], package: str, account: str
) -> None:
    used = used_permissions(package)
    assert used, f"no API call found in {package}: the check would check nothing"
    rules = granted(base, account)
    names_by_resource = {
        "secrets": names.WEBHOOK_TLS_SECRET,
        "mutatingwebhookconfigurations": names.WEBHOOK_CONFIGURATION,
        "validatingwebhookconfigurations": names.POD_GUARD_CONFIGURATION,
    }
    # Patching Nodes (the startup taint) is granted by an overlay (tests/prefetcher/test_rbac.py).
    optional = {(g, r, v) for g, r, v, _ in STARTUP_TAINT_CALLS}
    missing = [
        (g, r, v)
        for g, r, v in sorted(used - optional)
        if not allows(rules, g, r, v, names_by_resource.get(r, ""))
        # create cannot be limited by name, so it is granted without resourceNames
    ]
    assert missing == [], f"{account} lacks {missing}"


def test_webhook_rbac_is_exactly_what_it_needs(base: list[dict[str, Any]]) -> None:
    rules = granted(base, "image-sync-webhook")
    assert {
        (tuple(r["apiGroups"]), tuple(r["resources"]), tuple(sorted(r["verbs"]))) for r in rules
    } == {
        ((names.GROUP,), (names.CACHED_IMAGE_PLURAL,), ("create", "get", "update")),
        ((names.GROUP,), (f"{names.CACHED_IMAGE_PLURAL}/status",), ("update",)),
    }
    # Every verb granted is one the code uses (the other direction is checked above).
    used = used_permissions("webhook")
    for rule in rules:
        for verb in rule["verbs"]:
            for resource in rule["resources"]:
                assert (rule["apiGroups"][0], resource, verb) in used, (resource, verb)


def test_prefetcher_rbac(base: list[dict[str, Any]]) -> None:
    rules = granted(base, "image-sync-prefetcher")
    # It lists and watches Nodes, CachedImages and pods (DESIGN.md); it never GETs one object.
    for group, resource in [("", "nodes"), ("", "pods"), (names.GROUP, names.CACHED_IMAGE_PLURAL)]:
        for verb in ("list", "watch"):
            assert allows(rules, group, resource, verb), (resource, verb)
    # Pods are created only in the pod namespace; in its own: the Lease, and deleting pods an
    # older release left there.
    pod_rules = granted(base, "image-sync-prefetcher", names.POD_NAMESPACE_DEFAULT)
    assert allows(pod_rules, "", "pods", "create") and allows(pod_rules, "", "pods", "delete")
    assert not any("leases" in r["resources"] for r in pod_rules)
    own_rules = granted(base, "image-sync-prefetcher", NS)
    assert allows(own_rules, "coordination.k8s.io", "leases", "update")
    assert allows(own_rules, "", "pods", "delete") and not allows(own_rules, "", "pods", "create")
    cluster_role = find(base, "ClusterRole", "image-sync-prefetcher")
    for verb in ("create", "delete", "update"):
        assert not allows(cluster_role["rules"], "", "pods", verb)
    assert not any("leases" in r["resources"] for r in cluster_role["rules"])
    assert not allows(rules, "scheduling.k8s.io", "priorityclasses", "get")
    # Pull secrets (registry catalogs): get by name in the pod namespace, where they live
    # beside the pods that use them; nowhere else, and nothing more.
    assert not any("secrets" in r["resources"] for r in cluster_role["rules"])
    assert not any("secrets" in r["resources"] for r in own_rules)
    secret_rules = [r for r in pod_rules if "secrets" in r["resources"]]
    assert [r["verbs"] for r in secret_rules] == [["get"]]


def test_certs_rbac_is_limited_by_name(base: list[dict[str, Any]]) -> None:
    role = find(base, "Role", "image-sync-certs")
    for rule in role["rules"]:
        assert rule["resources"] == ["secrets"]
        if rule["verbs"] != ["create"]:
            assert sorted(rule["resourceNames"]) == [
                names.WEBHOOK_TLS_SECRET,
                f"{names.WEBHOOK_TLS_SECRET}-ca",
            ]
    mutating, validating = find(base, "ClusterRole", "image-sync-certs")["rules"]
    assert mutating["resources"] == ["mutatingwebhookconfigurations"]
    assert mutating["resourceNames"] == [names.WEBHOOK_CONFIGURATION]
    assert validating["resources"] == ["validatingwebhookconfigurations"]
    assert validating["resourceNames"] == [names.POD_GUARD_CONFIGURATION]
    assert sorted(mutating["verbs"]) == sorted(validating["verbs"]) == ["get", "patch"]
    # The webhook's own account cannot read the CA key.
    assert not any("secrets" in r["resources"] for r in granted(base, "image-sync-webhook"))

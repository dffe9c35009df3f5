"""Containers locked down, service accounts present, the pod namespace cannot alter image-sync."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from imagesync import names
from tests.manifests.reading import NS, bound_role, load_shipped_config, pod_spec, workloads
from tests.manifests.render import KUSTOMIZATIONS, ROOT, all_of, find, render


def _dockerfile_uid() -> int:
    users = re.findall(r"^USER\s+(\d+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    return int(users[-1])


@pytest.mark.parametrize("target", KUSTOMIZATIONS)
def test_every_container_is_locked_down(target: str) -> None:
    for workload in workloads(render(target)):
        spec = pod_spec(workload)
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True
        assert pod_security["runAsUser"] == _dockerfile_uid()
        assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["serviceAccountName"]
        for c in spec["containers"]:
            security = c["securityContext"]
            where = f"{workload['metadata']['name']}/{c['name']}"
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in security["capabilities"], where
            assert {"cpu", "memory"} <= set(c["resources"]["requests"]), where
            assert "memory" in c["resources"]["limits"], where


def test_service_accounts_exist(base: list[dict[str, Any]]) -> None:
    accounts = {
        o["metadata"]["name"]
        for o in all_of(base, "ServiceAccount")
        if o["metadata"]["namespace"] == NS
    }
    used = {pod_spec(w)["serviceAccountName"] for w in workloads(base)}
    assert used == accounts
    for binding in all_of(base, "RoleBinding") + all_of(base, "ClusterRoleBinding"):
        for subject in binding["subjects"]:
            assert subject["kind"] == "ServiceAccount"
            assert subject["name"] in accounts and subject["namespace"] == NS
        bound_role(base, binding)


def test_the_pod_namespace_holds_nothing_that_could_change_image_sync(
    base: list[dict[str, Any]], tmp_path: Path
) -> None:
    pod_namespace = names.POD_NAMESPACE_DEFAULT
    assert load_shipped_config(base, tmp_path).pod_namespace == pod_namespace
    namespace = find(base, "Namespace", pod_namespace)
    assert namespace["metadata"]["labels"][names.LABEL_ENABLED] == "false"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    inside = sorted(
        (o["kind"], o["metadata"]["name"])
        for o in base
        if o["metadata"].get("namespace") == pod_namespace
    )
    assert inside == [
        ("Role", "image-sync-prefetcher"),
        ("RoleBinding", "image-sync-prefetcher"),
        ("ServiceAccount", names.POD_SERVICE_ACCOUNT),
    ]
    account = find(base, "ServiceAccount", names.POD_SERVICE_ACCOUNT)
    assert account["automountServiceAccountToken"] is False
    # The pods' ServiceAccount is bound to nothing.
    for binding in all_of(base, "RoleBinding") + all_of(base, "ClusterRoleBinding"):
        assert names.POD_SERVICE_ACCOUNT not in {s["name"] for s in binding["subjects"]}
    # The prefetcher's Role there holds only its pods, their Events, and reading the pull
    # secrets by name (for registry catalogs and sizes).
    [rules] = [
        bound_role(base, b)["rules"]
        for b in all_of(base, "RoleBinding")
        if b["metadata"]["namespace"] == pod_namespace
    ]
    assert {(r, v) for rule in rules for r in rule["resources"] for v in rule["verbs"]} == {
        ("pods", "create"),
        ("pods", "delete"),
        ("events", "create"),
        ("secrets", "get"),
    }

"""Deletion: graceful pod deletion, finalizers, owner garbage collection, namespaces."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from tests.simulator.conftest import pod_body


def _exists(read, *args) -> bool:
    try:
        read(*args)
    except ApiException as e:
        assert e.status == 404
        return False
    return True


def test_unbound_pod_is_deleted_at_once(core) -> None:
    core.create_namespaced_pod("default", pod_body("p"))
    gone = core.delete_namespaced_pod("p", "default")
    assert gone.metadata.name == "p"
    assert not _exists(core.read_namespaced_pod, "p", "default")


def test_bound_pod_waits_for_the_kubelet(core) -> None:
    core.create_namespaced_pod(
        "default", pod_body("p", node="n1", terminationGracePeriodSeconds=45)
    )
    first = core.delete_namespaced_pod("p", "default")
    assert first.metadata.deletion_timestamp is not None
    assert first.metadata.deletion_grace_period_seconds == 45
    shorter = core.delete_namespaced_pod("p", "default", grace_period_seconds=10)
    assert shorter.metadata.deletion_grace_period_seconds == 10
    longer = core.delete_namespaced_pod("p", "default", grace_period_seconds=60)
    assert longer.metadata.deletion_grace_period_seconds == 10  # never extended
    assert _exists(core.read_namespaced_pod, "p", "default")
    core.delete_namespaced_pod("p", "default", grace_period_seconds=0)  # what the kubelet does
    assert not _exists(core.read_namespaced_pod, "p", "default")


def test_terminal_pod_is_deleted_at_once(core) -> None:
    core.create_namespaced_pod("default", pod_body("p", node="n1"))
    core.patch_namespaced_pod_status("p", "default", {"status": {"phase": "Succeeded"}})
    core.delete_namespaced_pod("p", "default")
    assert not _exists(core.read_namespaced_pod, "p", "default")


def test_finalizers_hold_the_object_until_removed(core) -> None:
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "cm", "finalizers": ["example.com/hold"]}}
    )
    status = core.delete_namespaced_config_map("cm", "default")
    assert status is not None
    cm = core.read_namespaced_config_map("cm", "default")
    assert cm.metadata.deletion_timestamp is not None
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_config_map(
            "cm", "default", {"metadata": {"finalizers": ["example.com/hold", "x/y"]}}
        )
    assert err.value.status == 403
    rv = cm.metadata.resource_version
    core.patch_namespaced_config_map("cm", "default", {"metadata": {"finalizers": None}})
    assert not _exists(core.read_namespaced_config_map, "cm", "default")
    w = watch.Watch()
    seen: list[Any] = []
    for ev in w.stream(
        core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=30
    ):
        seen.append(ev["type"])
        if ev["type"] == "DELETED":
            w.stop()
    assert seen == ["MODIFIED", "DELETED"]


def _owned(core, owner, name: str) -> None:
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": owner.metadata.name,
        "uid": owner.metadata.uid,
    }
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": name, "ownerReferences": [ref]}}
    )


def test_background_gc_deletes_dependents(core, apiserver) -> None:
    owner = core.create_namespaced_config_map("default", {"metadata": {"name": "owner"}})
    _owned(core, owner, "child")
    core.create_namespace({"metadata": {"name": "unrelated"}})
    core.delete_namespaced_config_map("owner", "default")
    apiserver.wait_for_gc()
    assert not _exists(core.read_namespaced_config_map, "child", "default")


def test_gc_keeps_dependents_with_a_live_owner(core, apiserver) -> None:
    a = core.create_namespaced_config_map("default", {"metadata": {"name": "a"}})
    b = core.create_namespaced_config_map("default", {"metadata": {"name": "b"}})
    refs = [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": o.metadata.name, "uid": o.metadata.uid}
        for o in (a, b)
    ]
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "child", "ownerReferences": refs}}
    )
    core.delete_namespaced_config_map("a", "default")
    apiserver.wait_for_gc()
    child = core.read_namespaced_config_map("child", "default")
    assert [r.name for r in child.metadata.owner_references] == ["b"]


def test_dependent_of_a_missing_owner_is_collected(core, apiserver) -> None:
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "ghost",
        "uid": "00000000-0000-0000-0000-000000000000",
    }
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "orphan", "ownerReferences": [ref]}}
    )
    apiserver.wait_for_gc()
    assert not _exists(core.read_namespaced_config_map, "orphan", "default")


def test_orphan_propagation_keeps_dependents(core, apiserver) -> None:
    owner = core.create_namespaced_config_map("default", {"metadata": {"name": "owner"}})
    _owned(core, owner, "child")
    core.delete_namespaced_config_map("owner", "default", propagation_policy="Orphan")
    apiserver.wait_for_gc()
    assert core.read_namespaced_config_map("child", "default").metadata.owner_references is None


def test_foreground_deletion_waits_for_dependents(core, apiserver) -> None:
    owner = core.create_namespaced_config_map("default", {"metadata": {"name": "owner"}})
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner.metadata.uid,
        "blockOwnerDeletion": True,
    }
    body = pod_body("child", node="n1")
    body["metadata"]["ownerReferences"] = [ref]
    core.create_namespaced_pod("default", body)
    core.delete_namespaced_config_map("owner", "default", propagation_policy="Foreground")
    apiserver.wait_for_gc()
    held = core.read_namespaced_config_map("owner", "default")
    assert "foregroundDeletion" in held.metadata.finalizers
    assert core.read_namespaced_pod("child", "default").metadata.deletion_timestamp is not None
    core.delete_namespaced_pod("child", "default", grace_period_seconds=0)  # the kubelet finishes
    apiserver.wait_for_gc()
    assert not _exists(core.read_namespaced_config_map, "owner", "default")


def test_namespace_deletion_empties_it_first(core, apiserver) -> None:
    core.create_namespace({"metadata": {"name": "gone"}})
    core.create_namespaced_config_map("gone", {"metadata": {"name": "cm"}})
    core.create_namespaced_pod("gone", pod_body("p", node="n1"))
    core.delete_namespace("gone")
    apiserver.wait_for_gc()
    ns = core.read_namespace("gone")
    assert ns.status.phase == "Terminating"
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("gone", {"metadata": {"name": "late"}})
    assert err.value.status == 403
    assert not _exists(core.read_namespaced_config_map, "cm", "gone")
    core.delete_namespaced_pod("p", "gone", grace_period_seconds=0)
    apiserver.wait_for_gc()
    assert not _exists(core.read_namespace, "gone")


def test_delete_preconditions_and_collection(core) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "a", "labels": {"x": "1"}}})
    core.create_namespaced_config_map("default", {"metadata": {"name": "b", "labels": {"x": "1"}}})
    core.create_namespaced_config_map("default", {"metadata": {"name": "c"}})
    with pytest.raises(ApiException) as err:
        core.delete_namespaced_config_map(
            "a",
            "default",
            body=client.V1DeleteOptions(preconditions=client.V1Preconditions(uid="wrong")),
        )
    assert err.value.status == 409
    core.delete_collection_namespaced_config_map("default", label_selector="x=1")
    assert [
        c.metadata.name
        for c in core.list_namespaced_config_map("default").items
        if c.metadata.name != "kube-root-ca.crt"
    ] == ["c"]


def test_pods_of_a_deleted_node_are_force_deleted(core, apiserver) -> None:
    core.create_node({"metadata": {"name": "n1"}})
    core.create_namespaced_pod("default", pod_body("p", node="n1"))
    core.delete_node("n1")
    apiserver.wait_for_gc()
    assert not _exists(core.read_namespaced_pod, "p", "default")


def test_eviction_respects_disruption_budgets(core, api) -> None:
    policy: Any = client.PolicyV1Api(api)
    for name in ("a", "b"):
        body = pod_body(name, node="n1")
        body["metadata"]["labels"] = {"app": "web"}
        core.create_namespaced_pod("default", body)
        ready = {
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
        }
        core.patch_namespaced_pod_status(name, "default", ready)
    policy.create_namespaced_pod_disruption_budget(
        "default",
        {
            "metadata": {"name": "pdb"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}},
        },
    )
    eviction: dict[str, Any] = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": "a"},
    }
    resp = core.create_namespaced_pod_eviction("a", "default", eviction, _preload_content=False)
    assert resp.status == 201
    assert core.read_namespaced_pod("a", "default").metadata.deletion_timestamp is not None
    eviction["metadata"]["name"] = "b"
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod_eviction("b", "default", eviction, _preload_content=False)
    assert err.value.status == 429
    assert "disruption budget" in json.loads(str(err.value.body))["message"]

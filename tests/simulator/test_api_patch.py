"""Every patch type: JSON patch, JSON merge patch, strategic merge patch, apply, and 415."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.apiserver_facts import JSON_PATCH_CASES, JsonPatchCase, check_json_patch
from tests.simulator.conftest import pod_body

PATCH = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSONP = "application/json-patch+json"


def _patch(apiserver, path: str, content_type: str, body: object) -> requests.Response:
    return requests.patch(
        f"{apiserver.url}{path}",
        data=json.dumps(body),
        headers={"Content-Type": content_type},
        timeout=10,
    )


def _two_container_pod(core) -> None:
    body = pod_body("p")
    body["spec"]["containers"] = [
        {
            "name": "a",
            "image": "busybox:1",
            "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
        },
        {"name": "b", "image": "busybox:2"},
    ]
    body["metadata"]["labels"] = {"keep": "1", "drop": "1"}
    core.create_namespaced_pod("default", body)


def test_strategic_merge_patch_merges_containers_by_name(core, apiserver) -> None:
    _two_container_pod(core)
    patch = {
        "metadata": {"labels": {"drop": None, "new": "1"}},
        "spec": {"containers": [{"name": "b", "image": "busybox:3"}]},
    }
    resp = _patch(apiserver, "/api/v1/namespaces/default/pods/p", PATCH, patch)
    assert resp.status_code == 200, resp.text
    pod = resp.json()
    assert pod["metadata"]["labels"] == {"keep": "1", "new": "1"}
    assert [(c["name"], c["image"]) for c in pod["spec"]["containers"]] == [
        ("a", "busybox:1"),
        ("b", "busybox:3"),
    ]
    # Anything but images is immutable on a pod, as on the real server.
    env = {"spec": {"containers": [{"name": "a", "env": [{"name": "Y", "value": "9"}]}]}}
    assert _patch(apiserver, "/api/v1/namespaces/default/pods/p", PATCH, env).status_code == 422


def test_strategic_merge_patch_merges_env_by_name_in_templates(api, apiserver) -> None:
    apps: Any = client.AppsV1Api(api)
    container = {
        "name": "a",
        "image": "x:1",
        "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}],
    }
    template = {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [container]}}
    apps.create_namespaced_deployment(
        "default",
        {
            "metadata": {"name": "d"},
            "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": template},
        },
    )
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "a",
                            "env": [{"name": "Y", "value": "9"}, {"name": "Z", "value": "3"}],
                        }
                    ]
                }
            }
        }
    }
    resp = _patch(apiserver, "/apis/apps/v1/namespaces/default/deployments/d", PATCH, patch)
    env = resp.json()["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [
        {"name": "X", "value": "1"},
        {"name": "Y", "value": "9"},
        {"name": "Z", "value": "3"},
    ]
    assert resp.json()["metadata"]["generation"] == 2


def test_strategic_delete_directive_and_conditions_by_type(core, apiserver) -> None:
    _two_container_pod(core)
    path = "/api/v1/namespaces/default/pods/p/status"
    conds = [{"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}]
    assert _patch(apiserver, path, PATCH, {"status": {"conditions": conds}}).status_code == 200
    pod = _patch(
        apiserver, path, PATCH, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    ).json()
    assert {c["type"]: c["status"] for c in pod["status"]["conditions"]} == {
        "Ready": "True",
        "Initialized": "True",
    }
    pod = _patch(
        apiserver, path, PATCH, {"status": {"conditions": [{"type": "Ready", "$patch": "delete"}]}}
    ).json()
    assert [c["type"] for c in pod["status"]["conditions"]] == ["Initialized"]


def test_node_taints_are_replaced_and_conditions_merged(core) -> None:
    core.create_node(
        {"metadata": {"name": "n1"}, "spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}}
    )
    node = core.patch_node("n1", {"spec": {"taints": [{"key": "b", "effect": "NoSchedule"}]}})
    assert [t.key for t in node.spec.taints] == ["b"]  # no patchStrategy on taints: replace
    core.patch_node_status("n1", {"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    node = core.patch_node_status(
        "n1", {"status": {"conditions": [{"type": "DiskPressure", "status": "False"}]}}
    )
    assert sorted(c.type for c in node.status.conditions) == ["DiskPressure", "Ready"]


def test_json_merge_patch_replaces_lists(core, apiserver) -> None:
    _two_container_pod(core)
    resp = _patch(
        apiserver,
        "/api/v1/namespaces/default/pods/p",
        MERGE,
        {"metadata": {"labels": {"drop": None}}},
    )
    assert resp.json()["metadata"]["labels"] == {"keep": "1"}
    core.create_node({"metadata": {"name": "n1"}, "spec": {"podCIDRs": ["10.0.0.0/24"]}})
    resp = _patch(apiserver, "/api/v1/nodes/n1", MERGE, {"spec": {"podCIDRs": ["10.0.1.0/24"]}})
    assert resp.json()["spec"]["podCIDRs"] == ["10.0.1.0/24"]


def test_json_patch_and_failed_test_op(core, apiserver) -> None:
    _two_container_pod(core)
    ops = [{"op": "replace", "path": "/spec/containers/1/image", "value": "busybox:9"}]
    resp = _patch(apiserver, "/api/v1/namespaces/default/pods/p", JSONP, ops)
    assert resp.json()["spec"]["containers"][1]["image"] == "busybox:9"
    bad = [{"op": "test", "path": "/metadata/labels/keep", "value": "nope"}]
    resp = _patch(apiserver, "/api/v1/namespaces/default/pods/p", JSONP, bad)
    assert resp.status_code == 422
    assert resp.json()["reason"] == "Invalid"


def test_unknown_patch_type_is_415(core, apiserver) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "cm"}})
    resp = _patch(apiserver, "/api/v1/namespaces/default/configmaps/cm", "application/xml", {})
    assert resp.status_code == 415
    assert resp.json()["reason"] == "UnsupportedMediaType"


def test_patch_with_stale_resource_version_conflicts(core) -> None:
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "cm"}})
    core.patch_namespaced_config_map("cm", "default", {"data": {"a": "1"}})
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_config_map(
            "cm",
            "default",
            {"metadata": {"resourceVersion": cm.metadata.resource_version}, "data": {"a": "2"}},
        )
    assert err.value.status == 409


def test_patch_missing_object_is_404(core) -> None:
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_config_map("nope", "default", {"data": {"a": "1"}})
    assert err.value.status == 404


def test_server_side_apply_creates_then_merges(apiserver) -> None:
    url = f"{apiserver.url}/api/v1/namespaces/default/configmaps/cm"
    body = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {a: '1'}\n"
    headers = {"Content-Type": "application/apply-patch+yaml"}
    assert (
        requests.patch(url, data=body, headers=headers, timeout=10).status_code == 400
    )  # fieldManager missing
    first = requests.patch(
        url, params={"fieldManager": "t"}, data=body, headers=headers, timeout=10
    )
    assert first.status_code == 201
    again = requests.patch(
        url,
        params={"fieldManager": "t"},
        data=body.replace("'1'", "'2'"),
        headers=headers,
        timeout=10,
    )
    assert again.status_code == 200
    assert again.json()["data"] == {"a": "2"}


@pytest.mark.parametrize("case", JSON_PATCH_CASES, ids=lambda c: c.why)
def test_json_patch_answers_like_the_real_server(api, case: JsonPatchCase) -> None:
    check_json_patch(api, "default", case)

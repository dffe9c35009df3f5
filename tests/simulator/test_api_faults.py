"""Fault injection: 429 with Retry-After, 500s, dropped watches, the admin endpoint."""

from __future__ import annotations

import json

import pytest
import requests
from kubernetes.client.exceptions import ApiException

from simulator.apiserver import FaultRule


def test_429_with_retry_after_then_recovers(apiserver) -> None:
    apiserver.add_fault(
        FaultRule(
            path=r"^/api/v1/namespaces/default/pods$",
            verbs=("list",),
            status=429,
            retry_after=3,
            times=2,
        )
    )
    url = f"{apiserver.url}/api/v1/namespaces/default/pods"
    for _ in range(2):
        resp = requests.get(url, timeout=10)
        assert resp.status_code == 429
        assert resp.headers["Retry-After"] == "3"
        body = resp.json()
        assert body["reason"] == "TooManyRequests"
        assert body["details"]["retryAfterSeconds"] == 3
    assert requests.get(url, timeout=10).json()["items"] == []
    assert (
        requests.post(
            url,
            json={
                "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": "x:1"}]},
            },
            timeout=10,
        ).status_code
        == 201
    )


def test_kubernetes_client_honours_retry_after(core, apiserver) -> None:
    apiserver.add_fault(
        FaultRule(path="/pods$", verbs=("list",), status=429, retry_after=1, times=1)
    )
    assert core.list_namespaced_pod("default").items == []  # urllib3 waited and retried
    assert apiserver.faults.to_json()["rules"][0]["fired"] == 1
    apiserver.add_fault(FaultRule(path="/configmaps$", verbs=("list",), status=500, times=1))
    with pytest.raises(ApiException) as err:
        core.list_namespaced_config_map("default")
    assert err.value.status == 500
    assert json.loads(str(err.value.body))["reason"] == "InternalError"


def test_error_rate_is_reproducible_with_a_seed(apiserver) -> None:
    def outcomes() -> list[int]:
        apiserver.set_faults([FaultRule(path="/configmaps", status=500, rate=0.5)], seed=7)
        return [
            requests.get(
                f"{apiserver.url}/api/v1/namespaces/default/configmaps", timeout=10
            ).status_code
            for _ in range(20)
        ]

    first = outcomes()
    assert set(first) == {200, 500}
    assert outcomes() == first
    apiserver.clear_faults()
    assert (
        requests.get(
            f"{apiserver.url}/api/v1/namespaces/default/configmaps", timeout=10
        ).status_code
        == 200
    )


def test_dropped_watch_ends_mid_stream(core, apiserver) -> None:
    for i in range(5):
        core.create_namespaced_config_map("default", {"metadata": {"name": f"cm{i}"}})
    apiserver.add_fault(FaultRule(path="/configmaps", verbs=("watch",), drop_watch_after=2))
    got = []
    url = f"{apiserver.url}/api/v1/namespaces/default/configmaps"
    params = {"watch": "true", "timeoutSeconds": "30"}
    with (
        pytest.raises(requests.exceptions.ChunkedEncodingError),  # no terminating chunk
        requests.get(url, params=params, stream=True, timeout=30) as resp,
    ):
        for line in resp.iter_lines():
            if line:
                got.append(json.loads(line)["object"]["metadata"]["name"])
    assert got == ["cm0", "cm1"]


def test_admin_endpoint_sets_lists_and_clears(apiserver) -> None:
    rules = {
        "rules": [
            {
                "path": "/api/v1/nodes",
                "verbs": ["get"],
                "status": 503,
                "retryAfter": 1,
                "latency": 0.01,
            }
        ],
        "seed": 3,
    }
    resp = requests.post(f"{apiserver.url}/sim/faults", json=rules, timeout=10)
    assert resp.status_code == 200
    hit = requests.get(f"{apiserver.url}/api/v1/nodes/n1", timeout=10)
    assert hit.status_code == 503
    assert hit.headers["Retry-After"] == "1"
    listed = requests.get(f"{apiserver.url}/sim/faults", timeout=10).json()
    assert listed["rules"][0]["fired"] == 1 and listed["seed"] == 3
    assert (
        requests.get(f"{apiserver.url}/api/v1/nodes", timeout=10).status_code == 200
    )  # list: not matched
    assert requests.delete(f"{apiserver.url}/sim/faults", timeout=10).json()["rules"] == []
    assert requests.get(f"{apiserver.url}/api/v1/nodes/n1", timeout=10).status_code == 404
    bad = requests.post(
        f"{apiserver.url}/sim/faults", json={"rules": [{"status": 418}]}, timeout=10
    )
    assert bad.status_code == 400


def test_409_conflict_names_the_object_like_the_real_server(core, apiserver) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "cm"}})
    apiserver.add_fault(
        FaultRule(path="/configmaps/cm$", verbs=("update", "patch"), status=409, times=1)
    )
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_config_map("cm", "default", {"data": {"a": "1"}})
    assert err.value.status == 409
    assert json.loads(str(err.value.body)) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'Operation cannot be fulfilled on configmaps "cm": the object has been '
        "modified; please apply your changes to the latest version and try again",
        "reason": "Conflict",
        "details": {"name": "cm", "kind": "configmaps"},
        "code": 409,
    }
    # times=1: the retry (what a client does after a conflict) goes through.
    core.patch_namespaced_config_map("cm", "default", {"data": {"a": "1"}})
    assert core.read_namespaced_config_map("cm", "default").data == {"a": "1"}


def test_409_on_a_group_resource_and_on_a_create(apiserver) -> None:
    apiserver.add_fault(FaultRule(path="/leases", verbs=("create",), status=409))
    url = f"{apiserver.url}/apis/coordination.k8s.io/v1/namespaces/default/leases"
    resp = requests.post(url, json={"metadata": {"name": "l1"}, "spec": {}}, timeout=10)
    assert resp.status_code == 409
    body = resp.json()
    assert body["reason"] == "Conflict"
    assert body["message"].startswith(
        'Operation cannot be fulfilled on leases.coordination.k8s.io "l1": '
    )
    assert body["details"] == {"name": "l1", "group": "coordination.k8s.io", "kind": "leases"}
    assert "Retry-After" not in resp.headers


def test_422_invalid_with_causes(core, apiserver) -> None:
    apiserver.add_fault(FaultRule(path="/pods$", verbs=("create",), status=422, times=1))
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x:1"}]}}
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod("default", pod)
    assert err.value.status == 422
    body = json.loads(str(err.value.body))
    assert body["reason"] == "Invalid"
    assert (
        body["message"] == 'Pod "p" is invalid: metadata.name: Invalid value: "p": injected fault'
    )
    assert body["details"] == {
        "name": "p",
        "kind": "Pod",
        "causes": [
            {
                "reason": "FieldValueInvalid",
                "field": "metadata.name",
                "message": 'Invalid value: "p": injected fault',
            }
        ],
    }
    assert core.list_namespaced_pod("default").items == []  # nothing was stored
    core.create_namespaced_pod("default", pod)  # times=1
    apiserver.set_faults([FaultRule(path="/deployments/", verbs=("patch",), status=422)])
    resp = requests.patch(
        f"{apiserver.url}/apis/apps/v1/namespaces/default/deployments/web",
        data="{}",
        headers={"Content-Type": "application/merge-patch+json"},
        timeout=10,
    )
    assert resp.status_code == 422
    assert resp.json()["message"].startswith('Deployment.apps "web" is invalid: ')
    assert resp.json()["details"]["group"] == "apps"


def test_admin_endpoint_accepts_409_and_422(apiserver) -> None:
    for status in (409, 422):
        rules = {"rules": [{"path": "/configmaps", "status": status}]}
        resp = requests.post(f"{apiserver.url}/sim/faults", json=rules, timeout=10)
        assert resp.status_code == 200
        got = requests.get(f"{apiserver.url}/api/v1/namespaces/default/configmaps/x", timeout=10)
        assert got.status_code == status
    bad = requests.post(
        f"{apiserver.url}/sim/faults", json={"rules": [{"status": 404}]}, timeout=10
    )
    assert bad.status_code == 400
    assert "409, 422, 429, 500, 503" in bad.json()["message"]

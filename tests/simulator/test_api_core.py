"""Create, read, update, conflicts and errors through the real kubernetes client."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import threading
from typing import Any

import pytest
import requests
from cryptography import x509
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from simulator.apiserver import TLSConfig
from simulator.testing import kube_client, running_apiserver
from tests.simulator.conftest import find_kubectl, make_cert, pod_body


def _status(e: ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(str(e.body))
    return body


def test_create_get_list_with_resource_versions(core) -> None:
    core.create_namespace({"metadata": {"name": "demo"}})
    created = core.create_namespaced_pod("demo", pod_body("web"))
    assert created.metadata.uid
    assert created.metadata.creation_timestamp is not None
    assert created.metadata.generation is None  # pods carry none on the real server
    assert created.status.phase == "Pending"
    got = core.read_namespaced_pod("web", "demo")
    assert got.metadata.resource_version == created.metadata.resource_version
    listed = core.list_namespaced_pod("demo")
    assert [p.metadata.name for p in listed.items] == ["web"]
    assert int(listed.metadata.resource_version) >= int(created.metadata.resource_version)


def test_defaults_like_the_real_server(core) -> None:
    body = pod_body("p")
    body["spec"]["containers"].append({"name": "latest", "image": "busybox"})
    pod = core.create_namespaced_pod("default", body)
    assert [c.image_pull_policy for c in pod.spec.containers] == ["IfNotPresent", "Always"]
    assert pod.spec.restart_policy == "Always"
    assert pod.spec.termination_grace_period_seconds == 30
    assert pod.spec.scheduler_name == "default-scheduler"
    assert pod.status.qos_class == "BestEffort"


def test_already_exists_and_generate_name(core) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "cm"}})
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("default", {"metadata": {"name": "cm"}})
    assert err.value.status == 409
    assert _status(err.value)["reason"] == "AlreadyExists"
    assert _status(err.value)["details"] == {"name": "cm", "kind": "configmaps"}
    a = core.create_namespaced_pod("default", pod_body(generate="job-"))
    b = core.create_namespaced_pod("default", pod_body(generate="job-"))
    assert a.metadata.name.startswith("job-") and len(a.metadata.name) == len("job-") + 5
    assert a.metadata.name != b.metadata.name


def test_not_found_and_missing_namespace(core) -> None:
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod("nope", "default")
    assert err.value.status == 404
    assert _status(err.value)["reason"] == "NotFound"
    assert _status(err.value)["message"] == 'pods "nope" not found'
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod("ghost", pod_body("p"))
    assert err.value.status == 404
    assert _status(err.value)["message"] == 'namespaces "ghost" not found'


def test_invalid_is_422(core) -> None:
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("default", {"metadata": {"name": "Bad_Name"}})
    assert err.value.status == 422
    assert _status(err.value)["reason"] == "Invalid"
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("default", {"metadata": {}})
    assert err.value.status == 422


def test_update_conflict_and_no_op(core) -> None:
    cm = core.create_namespaced_config_map(
        "default", {"metadata": {"name": "cm"}, "data": {"a": "1"}}
    )
    cm.data = {"a": "2"}
    updated = core.replace_namespaced_config_map("cm", "default", cm)
    assert int(updated.metadata.resource_version) > int(cm.metadata.resource_version)
    cm.data = {"a": "3"}  # still carries the old resourceVersion
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("cm", "default", cm)
    assert err.value.status == 409
    assert _status(err.value)["reason"] == "Conflict"
    again = core.replace_namespaced_config_map("cm", "default", updated)
    assert again.metadata.resource_version == updated.metadata.resource_version


def test_pod_spec_is_immutable_except_images(core) -> None:
    pod = core.create_namespaced_pod("default", pod_body("p"))
    pod.spec.containers[0].image = "busybox:1.37"
    pod = core.replace_namespaced_pod("p", "default", pod)
    assert pod.spec.containers[0].image == "busybox:1.37"
    pod.spec.node_name = "somewhere"
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_pod("p", "default", pod)
    assert err.value.status == 422


def test_status_subresource_separates_spec_and_status(core) -> None:
    core.create_node({"metadata": {"name": "n1"}, "spec": {"unschedulable": False}})
    node = core.read_node("n1")
    node.status = client.V1NodeStatus(capacity={"cpu": "4"})
    node = core.replace_node("n1", node)  # main resource: status ignored
    assert node.status is None or not node.status.capacity
    node = core.patch_node_status(
        "n1", {"status": {"capacity": {"cpu": "4"}}, "spec": {"unschedulable": True}}
    )
    assert node.status.capacity == {"cpu": "4"}
    assert not node.spec.unschedulable


def test_binding_sets_node_once(core) -> None:
    core.create_namespaced_pod("default", pod_body("p"))
    body = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "p"},
        "target": {"kind": "Node", "name": "n1"},
    }
    # The real server answers a Status, which this client cannot decode as V1Binding.
    resp = core.create_namespaced_pod_binding("p", "default", body, _preload_content=False)
    assert resp.status == 201
    assert json.loads(resp.data)["status"] == "Success"
    pod = core.read_namespaced_pod("p", "default")
    assert pod.spec.node_name == "n1"
    assert [(c.type, c.status) for c in pod.status.conditions] == [("PodScheduled", "True")]
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod_binding("p", "default", body, _preload_content=False)
    assert err.value.status == 409


def test_dry_run_create_does_not_persist(core) -> None:
    pod = core.create_namespaced_pod("default", pod_body("p"), dry_run="All")
    assert pod.metadata.name == "p"
    with pytest.raises(ApiException):
        core.read_namespaced_pod("p", "default")


def test_leases_events_and_priorityclasses(api) -> None:
    coord: Any = client.CoordinationV1Api(api)
    lease = coord.create_namespaced_lease(
        "default",
        {
            "metadata": {"name": "leader"},
            "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15},
        },
    )
    lease.spec.holder_identity = "b"
    assert coord.replace_namespaced_lease("leader", "default", lease).spec.holder_identity == "b"
    events: Any = client.EventsV1Api(api)
    events.create_namespaced_event(
        "default",
        {
            "metadata": {"name": "e1"},
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reason": "Pulled",
            "action": "Pull",
            "reportingController": "x",
            "reportingInstance": "y",
            "type": "Normal",
            "regarding": {"kind": "Pod", "name": "p"},
            "note": "pulled",
        },
    )
    core: Any = client.CoreV1Api(api)
    as_core = core.read_namespaced_event("e1", "default")  # one storage, two APIs
    assert (as_core.involved_object.name, as_core.message, as_core.reporting_component) == (
        "p",
        "pulled",
        "x",
    )
    core.create_namespaced_event(
        "default",
        {
            "metadata": {"name": "e2"},
            "involvedObject": {"kind": "Pod", "name": "p"},
            "reason": "Scheduled",
            "message": "assigned",
            "eventTime": "2026-01-01T00:00:00.000000Z",
        },
    )
    scheduled = core.list_namespaced_event("default", field_selector="reason=Scheduled").items
    assert [e.metadata.name for e in scheduled] == ["e2"]
    listed = events.list_namespaced_event("default").items
    assert [(e.metadata.name, e.note) for e in listed] == [("e1", "pulled"), ("e2", "assigned")]
    sched: Any = client.SchedulingV1Api(api)
    sched.create_priority_class({"metadata": {"name": "low"}, "value": -10})
    pod = core.create_namespaced_pod("default", pod_body("p", priorityClassName="low"))
    assert pod.spec.priority == -10
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod("default", pod_body("q", priorityClassName="missing"))
    assert err.value.status == 403


def test_unknown_resource_and_method_errors(apiserver) -> None:
    r = requests.get(f"{apiserver.url}/api/v1/widgets", timeout=10)
    assert r.status_code == 404
    assert r.json()["reason"] == "NotFound"
    r = requests.post(f"{apiserver.url}/api/v1/pods", json=pod_body("p"), timeout=10)
    assert r.status_code == 405
    assert r.json()["reason"] == "MethodNotAllowed"
    r = requests.post(
        f"{apiserver.url}/api/v1/namespaces/default/configmaps",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 400
    assert r.json()["reason"] == "BadRequest"


def test_tls_serving_with_the_kubernetes_client_and_kubectl(tmp_path) -> None:
    sans: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.DNSName("localhost"),
    ]
    ca, cert_file, key_file = make_cert(tmp_path, sans)
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(ca)
    tls = TLSConfig(str(cert_file), str(key_file), str(ca_file))
    with running_apiserver(tls=tls) as server:
        assert server.url.startswith("https://127.0.0.1:")
        core: Any = client.CoreV1Api(kube_client(server))
        names = [n.metadata.name for n in core.list_namespace().items]
        assert "default" in names
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        binary = find_kubectl()
        if binary is not None:
            out = subprocess.run(
                [binary, "--kubeconfig", str(kubeconfig), "get", "ns", "default", "-o", "name"],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            assert out.stdout == "namespace/default\n"


def test_many_concurrent_watches_each_get_their_events(apiserver) -> None:
    url = f"{apiserver.url}/api/v1/pods"
    results: dict[int, list[str]] = {}
    ready = threading.Barrier(51)

    def watch_node(i: int) -> None:
        with requests.get(
            url,
            params={
                "watch": "true",
                "fieldSelector": f"spec.nodeName=n{i}",
                "timeoutSeconds": "60",
            },
            stream=True,
            timeout=60,
        ) as resp:
            ready.wait()
            for line in resp.iter_lines():
                if line:
                    results[i] = [json.loads(line)["object"]["metadata"]["name"]]
                    return

    threads = [threading.Thread(target=watch_node, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    ready.wait()
    for i in reversed(range(50)):
        body = pod_body(f"p{i}", node=f"n{i}")
        assert (
            requests.post(
                f"{apiserver.url}/api/v1/namespaces/default/pods", json=body, timeout=10
            ).status_code
            == 201
        )
    for t in threads:
        t.join(timeout=60)
    assert results == {i: [f"p{i}"] for i in range(50)}

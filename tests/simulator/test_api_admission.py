"""Mutating admission webhooks called over verified TLS, with a real test webhook in-process."""

from __future__ import annotations

import base64
import ipaddress
import json
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.simulator.conftest import make_cert, pod_body

SERVICE_NS, SERVICE_NAME = "webhooks", "hook"


@dataclass
class Webhook:
    """A minimal mutating webhook: records reviews, answers with `respond(review)`."""

    port: int
    ca_bundle: str
    reviews: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    peers: list[int] = field(default_factory=list)
    respond: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    release: threading.Event = field(default_factory=threading.Event)


def _set_if_not_present(review: dict[str, Any]) -> dict[str, Any]:
    req = review["request"]
    ops: list[dict[str, Any]] = [
        {"op": "replace", "path": f"/spec/containers/{i}/imagePullPolicy", "value": "IfNotPresent"}
        for i, _ in enumerate(req["object"]["spec"]["containers"])
    ]
    ops.append({"op": "add", "path": "/metadata/annotations", "value": {"mutated": "yes"}})
    return {
        "uid": req["uid"],
        "allowed": True,
        "patchType": "JSONPatch",
        "patch": base64.b64encode(json.dumps(ops).encode()).decode(),
    }


@pytest.fixture
def webhook(tmp_path: Path) -> Iterator[Webhook]:
    sans: list[x509.GeneralName] = [
        x509.DNSName(f"{SERVICE_NAME}.{SERVICE_NS}.svc"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    ca, cert_file, key_file = make_cert(tmp_path, sans)
    state: dict[str, Webhook] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like gunicorn

        def log_message(self, format: str, *args: object) -> None:
            return

        def do_POST(self) -> None:
            hook = state["hook"]
            review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            hook.reviews.append(review)
            hook.paths.append(self.path)
            hook.peers.append(self.client_address[1])
            answer = (hook.respond or _set_if_not_present)(review)
            data = json.dumps(
                {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": answer}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: object, client_address: object) -> None:
            return  # TLS handshakes the API server aborts on purpose (wrong CA)

    server = Server(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    state["hook"] = Webhook(server.server_address[1], base64.b64encode(ca).decode())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state["hook"]
    state["hook"].release.set()
    server.shutdown()
    server.server_close()


def _config(hook: Webhook, **overrides: object) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "pull-policy.image-sync.io",
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Fail",
        "timeoutSeconds": 5,
        "clientConfig": {
            "service": {
                "namespace": SERVICE_NS,
                "name": SERVICE_NAME,
                "path": "/mutate",
                "port": 443,
            },
            "caBundle": hook.ca_bundle,
        },
        "rules": [
            {
                "operations": ["CREATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods"],
                "scope": "*",
            }
        ],
        "namespaceSelector": {
            "matchExpressions": [
                {"key": "image-sync.io/enabled", "operator": "NotIn", "values": ["false"]}
            ]
        },
    }
    entry.update(overrides)
    return {"metadata": {"name": "image-sync"}, "webhooks": [entry]}


@pytest.fixture
def admission(api) -> client.AdmissionregistrationV1Api:
    return client.AdmissionregistrationV1Api(api)


def test_pod_create_is_mutated_through_a_mapped_service(
    core, admission, apiserver, webhook
) -> None:
    apiserver.map_service(SERVICE_NS, SERVICE_NAME, "127.0.0.1", webhook.port)
    admission.create_mutating_webhook_configuration(_config(webhook))
    pod = core.create_namespaced_pod(
        "default", pod_body("p", node="") | {"metadata": {"generateName": "web-"}}
    )
    assert pod.spec.containers[0].image_pull_policy == "IfNotPresent"
    assert pod.metadata.annotations == {"mutated": "yes"}
    assert webhook.paths == ["/mutate?timeout=5s"]
    review = webhook.reviews[0]
    assert review["apiVersion"] == "admission.k8s.io/v1" and review["kind"] == "AdmissionReview"
    req = review["request"]
    assert req["kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert req["resource"] == {"group": "", "version": "v1", "resource": "pods"}
    assert req["requestKind"] == req["kind"] and req["requestResource"] == req["resource"]
    assert req["namespace"] == "default" and req["operation"] == "CREATE"
    assert req["name"] == pod.metadata.name  # the generated name is known before admission
    assert req["oldObject"] is None and req["dryRun"] is False
    assert req["options"] == {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
    assert req["userInfo"]["username"]
    assert (
        req["object"]["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    )  # defaulted first
    assert "uid" not in req["object"]["metadata"]
    for name in ("second", "third"):
        core.create_namespaced_pod("default", pod_body(name))
    assert len(set(webhook.peers)) == 1  # one kept-alive TLS connection for all calls


def test_service_endpoint_annotation_and_url_client_config(core, admission, webhook) -> None:
    core.create_namespace({"metadata": {"name": SERVICE_NS}})
    core.create_namespaced_service(
        SERVICE_NS,
        {
            "metadata": {
                "name": SERVICE_NAME,
                "annotations": {"sim.image-sync.io/endpoint": f"127.0.0.1:{webhook.port}"},
            },
            "spec": {"ports": [{"port": 443, "targetPort": 8443}]},
        },
    )
    admission.create_mutating_webhook_configuration(_config(webhook))
    assert core.create_namespaced_pod("default", pod_body("a")).metadata.annotations == {
        "mutated": "yes"
    }
    url_config = _config(
        webhook,
        clientConfig={
            "url": f"https://127.0.0.1:{webhook.port}/mutate",
            "caBundle": webhook.ca_bundle,
        },
    )
    admission.replace_mutating_webhook_configuration(
        "image-sync", url_config | {"metadata": {"name": "image-sync", "resourceVersion": None}}
    )
    assert core.create_namespaced_pod("default", pod_body("b")).metadata.annotations == {
        "mutated": "yes"
    }
    assert len(webhook.reviews) == 2


def test_wrong_ca_fails_closed_or_open(core, admission, apiserver, webhook, tmp_path) -> None:
    other_ca, _, _ = make_cert(tmp_path, [x509.DNSName("elsewhere")])
    apiserver.map_service(SERVICE_NS, SERVICE_NAME, "127.0.0.1", webhook.port)
    cfg = _config(webhook)
    cfg["webhooks"][0]["clientConfig"]["caBundle"] = base64.b64encode(other_ca).decode()
    admission.create_mutating_webhook_configuration(cfg)
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod("default", pod_body("p"))
    assert err.value.status == 500
    body = json.loads(str(err.value.body))
    assert body["reason"] == "InternalError"
    assert 'failed calling webhook "pull-policy.image-sync.io"' in body["message"]
    assert f"https://{SERVICE_NAME}.{SERVICE_NS}.svc:443/mutate?timeout=5s" in body["message"]
    cfg["webhooks"][0]["failurePolicy"] = "Ignore"
    admission.patch_mutating_webhook_configuration("image-sync", {"webhooks": cfg["webhooks"]})
    pod = core.create_namespaced_pod("default", pod_body("p"))
    assert pod.metadata.annotations is None
    assert webhook.reviews == []


def test_namespace_and_object_selectors_and_rules(core, admission, apiserver, webhook) -> None:
    apiserver.map_service(SERVICE_NS, SERVICE_NAME, "127.0.0.1", webhook.port)
    cfg = _config(
        webhook, objectSelector={"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]}
    )
    admission.create_mutating_webhook_configuration(cfg)
    core.create_namespace(
        {"metadata": {"name": "off", "labels": {"image-sync.io/enabled": "false"}}}
    )
    assert core.create_namespaced_pod("off", pod_body("p")).metadata.annotations is None
    skipped = pod_body("q")
    skipped["metadata"]["labels"] = {"skip": "1"}
    assert core.create_namespaced_pod("default", skipped).metadata.annotations is None
    core.create_namespaced_config_map("default", {"metadata": {"name": "cm"}})  # rules: pods only
    assert webhook.reviews == []
    assert core.create_namespaced_pod("default", pod_body("r")).metadata.annotations == {
        "mutated": "yes"
    }


def test_denial_and_dry_run(core, admission, apiserver, webhook) -> None:
    apiserver.map_service(SERVICE_NS, SERVICE_NAME, "127.0.0.1", webhook.port)
    admission.create_mutating_webhook_configuration(_config(webhook))
    pod = core.create_namespaced_pod("default", pod_body("p"), dry_run="All")
    assert pod.metadata.annotations == {"mutated": "yes"}
    assert webhook.reviews[-1]["request"]["dryRun"] is True
    assert core.list_namespaced_pod("default").items == []
    webhook.respond = lambda r: {
        "uid": r["request"]["uid"],
        "allowed": False,
        "status": {"code": 403, "message": "nope"},
    }
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod("default", pod_body("p"))
    assert err.value.status == 403
    assert (
        json.loads(str(err.value.body))["message"]
        == 'admission webhook "pull-policy.image-sync.io" denied the request: nope'
    )
    cfg = _config(webhook, sideEffects="Unknown")
    admission.replace_mutating_webhook_configuration("image-sync", cfg)
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod("default", pod_body("p"), dry_run="All")
    assert err.value.status == 400


def test_timeout_with_ignore_lets_the_pod_through(core, admission, apiserver, webhook) -> None:
    apiserver.map_service(SERVICE_NS, SERVICE_NAME, "127.0.0.1", webhook.port)

    def stuck(review: dict[str, Any]) -> dict[str, Any]:
        webhook.release.wait(30)
        return _set_if_not_present(review)

    webhook.respond = stuck
    admission.create_mutating_webhook_configuration(
        _config(webhook, timeoutSeconds=1, failurePolicy="Ignore")
    )
    pod = core.create_namespaced_pod("default", pod_body("p"))
    webhook.release.set()
    assert pod.metadata.annotations is None
    assert len(webhook.reviews) == 1


def test_validating_webhooks_see_the_final_object_and_may_deny(
    core, admission, apiserver, webhook
) -> None:
    apiserver.map_service(SERVICE_NS, SERVICE_NAME, "127.0.0.1", webhook.port)
    admission.create_mutating_webhook_configuration(_config(webhook))

    def respond(review: dict[str, Any]) -> dict[str, Any]:
        if not webhook.paths[-1].startswith("/validate"):
            return _set_if_not_present(review)
        obj = review["request"]["object"]
        bad = (obj["metadata"].get("labels") or {}).get("bad") == "yes"
        mutated = (obj["metadata"].get("annotations") or {}).get("mutated") == "yes"
        allowed = mutated and not bad
        return {
            "uid": review["request"]["uid"],
            "allowed": allowed,
            "status": {"message": "labelled bad"},
        }

    webhook.respond = respond
    validating = _config(webhook)
    validating["webhooks"][0]["clientConfig"]["service"]["path"] = "/validate"
    admission.create_validating_webhook_configuration(validating)
    assert core.create_namespaced_pod("default", pod_body("good")).metadata.annotations == {
        "mutated": "yes"
    }
    bad = pod_body("bad")
    bad["metadata"]["labels"] = {"bad": "yes"}
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod("default", bad)
    assert err.value.status == 403
    assert "labelled bad" in json.loads(str(err.value.body))["message"]
    assert [p.split("?")[0] for p in webhook.paths] == [
        "/mutate",
        "/validate",
        "/mutate",
        "/validate",
    ]


def test_update_webhooks_get_the_old_object(core, admission, apiserver, webhook) -> None:
    apiserver.map_service(SERVICE_NS, SERVICE_NAME, "127.0.0.1", webhook.port)

    def label(review: dict[str, Any]) -> dict[str, Any]:
        ops = [{"op": "add", "path": "/metadata/labels", "value": {"touched": "yes"}}]
        patch = base64.b64encode(json.dumps(ops).encode()).decode()
        return {
            "uid": review["request"]["uid"],
            "allowed": True,
            "patchType": "JSONPatch",
            "patch": patch,
        }

    webhook.respond = label
    rules = [
        {
            "operations": ["UPDATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["configmaps"],
        }
    ]
    admission.create_mutating_webhook_configuration(_config(webhook, rules=rules))
    core.create_namespaced_config_map("default", {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    assert webhook.reviews == []  # rules: UPDATE only
    cm = core.patch_namespaced_config_map("cm", "default", {"data": {"a": "2"}})
    assert cm.metadata.labels == {"touched": "yes"} and cm.data == {"a": "2"}
    req = webhook.reviews[0]["request"]
    assert req["operation"] == "UPDATE"
    assert req["oldObject"]["data"] == {"a": "1"} and req["object"]["data"] == {"a": "2"}
    assert req["options"] == {"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"}
    core.patch_namespaced_config_map("cm", "default", {"data": {"a": "2"}})  # no change: no call
    assert len(webhook.reviews) == 1
    cm.data = {"a": "3"}
    assert core.replace_namespaced_config_map("cm", "default", cm).data == {"a": "3"}
    assert len(webhook.reviews) == 2

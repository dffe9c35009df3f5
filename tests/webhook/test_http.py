"""POST /mutate on a real gunicorn over TLS: realistic pods, bad input, other resources."""

from __future__ import annotations

import copy
import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from imagesync.names import ANNOTATION_REWRITTEN
from tests.test_mutation import check_only_pull_policies_of_managed_containers, pods
from tests.webhook.conftest import Tls, WebhookProcess, start_webhook
from tests.webhook.pods import (
    DIGEST,
    HARBOR,
    apply_response,
    container,
    deployment_pod,
    gpu_job_pod,
    pod,
    policies,
    review,
)


def admit(webhook: WebhookProcess, obj: dict[str, Any] | None, **kwargs: Any) -> dict[str, Any]:
    sent = review(obj, **kwargs)
    answer = webhook.post(sent)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    body: dict[str, Any] = answer.json()
    assert body["response"]["uid"] == sent["request"]["uid"]
    return body


def test_deployment_pod_from_replicaset_gets_if_not_present(webhook: WebhookProcess) -> None:
    obj = deployment_pod(f"{HARBOR}/shop/frontend:2.3.1", "Always")
    result = apply_response(obj, admit(webhook, obj))
    assert policies(result) == {"containers/app": "IfNotPresent"}


def test_gpu_job_with_init_container(webhook: WebhookProcess) -> None:
    obj = gpu_job_pod()
    result = apply_response(obj, admit(webhook, obj))
    assert policies(result) == {
        "initContainers/fetch-data": "IfNotPresent",
        "containers/train": "IfNotPresent",
    }
    assert result["metadata"]["annotations"][ANNOTATION_REWRITTEN] == "fetch-data,train"
    assert result["spec"]["containers"][0]["resources"] == obj["spec"]["containers"][0]["resources"]


def test_mixed_pod_digests_ports_private_and_foreign_images(webhook: WebhookProcess) -> None:
    obj = pod(
        [
            container("digest", f"nvcr.io/nvidia/cuda@{DIGEST}", "Always"),
            container("port", "registry.corp.example:5000/ml/trainer:3", None),
            container("hub", "docker.io/library/busybox:1.36", "Always"),
            container("latest", f"{HARBOR}/team/api:latest", "Always"),
            container("never", f"{HARBOR}/team/offline:1", "Never"),
        ],
        init=[container("init-foreign", "quay.io/prometheus/busybox:1", "Always")],
    )
    result = apply_response(obj, admit(webhook, obj))
    assert policies(result) == {
        "initContainers/init-foreign": "Always",
        "containers/digest": "IfNotPresent",
        "containers/port": "IfNotPresent",
        "containers/hub": "Always",
        "containers/latest": "Always",
        "containers/never": "Never",
    }
    assert result["metadata"]["annotations"] == {ANNOTATION_REWRITTEN: "digest,port"}


def test_nothing_to_change_has_no_patch(webhook: WebhookProcess) -> None:
    obj = deployment_pod("docker.io/library/busybox:1.36", "Always")
    body = admit(webhook, obj)
    assert body["response"] == {"uid": body["response"]["uid"], "allowed": True}


def test_opt_out_keep_and_dry_run(webhook: WebhookProcess) -> None:
    out = deployment_pod(
        f"{HARBOR}/a/b:1", "Always", annotations={"image-sync.io/enabled": "false"}
    )
    assert "patch" not in admit(webhook, out)["response"]
    keep = deployment_pod(
        f"{HARBOR}/a/b:1", "Always", annotations={"image-sync.io/pull-policy": "keep"}
    )
    assert "patch" not in admit(webhook, keep)["response"]
    dry = deployment_pod(f"{HARBOR}/a/b:1", "Always")
    assert policies(apply_response(dry, admit(webhook, dry, dry_run=True))) == {
        "containers/app": "IfNotPresent"
    }


def test_other_resources_and_operations_are_allowed_unchanged(webhook: WebhookProcess) -> None:
    obj = deployment_pod(f"{HARBOR}/a/b:1", "Always")
    for kwargs in (
        {"operation": "UPDATE"},
        {"kind": "Deployment", "group": "apps", "resource": "deployments"},
        {"kind": "Binding", "resource": "pods"},
    ):
        body = admit(webhook, obj, **kwargs)
        assert body["response"]["allowed"] is True and "patch" not in body["response"], kwargs
    body = admit(webhook, None, operation="DELETE", namespace="default")
    assert body["response"]["allowed"] is True and "patch" not in body["response"]


BAD_INPUT = [
    (b"{not json", "not valid JSON"),
    (b"[]", "body must be a JSON object"),
    (
        json.dumps(
            {"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {}}
        ).encode(),
        "apiVersion must be admission.k8s.io/v1",
    ),
    (
        json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "Pod"}).encode(),
        "kind must be AdmissionReview",
    ),
    (
        json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(),
        "request is missing",
    ),
    (b"\xff\xfe garbage", "not valid JSON"),
]


@pytest.mark.parametrize(("raw", "reason"), BAD_INPUT)
def test_bad_input_is_400_with_reason(webhook: WebhookProcess, raw: bytes, reason: str) -> None:
    answer = webhook.post(None, raw=raw)
    assert answer.status_code == 400
    assert reason in answer.json()["error"]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda r: r["request"].pop("uid"), "request.uid is missing"),
        (lambda r: r["request"].pop("object"), "request.object is missing"),
        (
            lambda r: r["request"].__setitem__("object", "pod"),
            "request.object must be a JSON object",
        ),
        (lambda r: r["request"].__setitem__("operation", "PATCH"), "request.operation"),
        (lambda r: r["request"].__setitem__("kind", None), "request.kind must be a JSON object"),
        (lambda r: r["request"].__setitem__("dryRun", "yes"), "request.dryRun must be a boolean"),
    ],
)
def test_incomplete_reviews_are_400(webhook: WebhookProcess, change: Any, reason: str) -> None:
    sent = review(deployment_pod(f"{HARBOR}/a/b:1"))
    change(sent)
    answer = webhook.post(sent)
    assert answer.status_code == 400
    assert reason in answer.json()["error"]


def test_malformed_pod_is_admitted_and_worker_survives(webhook: WebhookProcess) -> None:
    weird = {
        "metadata": {"annotations": ["x"]},
        "spec": {
            "containers": [{"image": f"{HARBOR}/a/b:1", "imagePullPolicy": 7}, "x"],
            "tolerations": "bad",
        },
    }
    body = admit(webhook, weird)
    assert body["response"]["allowed"] is True
    assert webhook.get("/healthz").status_code == 200
    assert webhook.process.poll() is None


def test_health_readiness_and_method_errors(webhook: WebhookProcess) -> None:
    assert webhook.get("/healthz").json() == {"ok": True}
    ready = webhook.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["learning"] == "off"
    assert webhook.get("/mutate").status_code == 405


def test_tls_1_2_is_negotiated_and_is_the_minimum(webhook: WebhookProcess, tls: Tls) -> None:
    import socket
    import ssl
    from types import SimpleNamespace

    from webhook.server import CertificateReloader

    context = ssl.create_default_context(cafile=webhook.tls.ca_file)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        socket.create_connection(("127.0.0.1", webhook.port)) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls_sock,
    ):
        assert tls_sock.version() == "TLSv1.2"
    conf = SimpleNamespace(certfile=tls.cert_file, keyfile=tls.key_file)

    def factory() -> ssl.SSLContext:
        made = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        made.load_cert_chain(tls.cert_file, tls.key_file)
        return made

    server_context = CertificateReloader()(conf, factory)
    assert server_context.minimum_version == ssl.TLSVersion.TLSv1_2


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(obj=pods)
def test_property_patch_from_server_applies_and_touches_only_managed(
    webhook: WebhookProcess, obj: dict[str, Any]
) -> None:
    before = copy.deepcopy(obj)
    after = apply_response(obj, admit(webhook, obj))
    check_only_pull_policies_of_managed_containers(before, after)


def test_explicit_always_keep_through_the_server(tmp_path: Path, tls: Tls) -> None:
    server = start_webhook(tmp_path, tls, workers=1, env={"IMAGE_SYNC_EXPLICIT_ALWAYS": "keep"})
    try:
        tagged = deployment_pod(f"{HARBOR}/shop/frontend:2.3.1", "Always")
        assert "patch" not in admit(server, tagged)["response"]
        pinned = deployment_pod(f"{HARBOR}/shop/frontend:2.3.1@{DIGEST}", "Always")
        assert policies(apply_response(pinned, admit(server, pinned))) == {
            "containers/app": "IfNotPresent"
        }
    finally:
        assert server.stop() == 0


def test_opt_in_mode_server(tmp_path: Path, tls: Tls) -> None:
    server = start_webhook(
        tmp_path,
        tls,
        workers=1,
        env={"IMAGE_SYNC_MODE": "opt-in", "IMAGE_SYNC_REWRITE_LATEST": "true"},
    )
    try:
        plain = deployment_pod(f"{HARBOR}/a/b:latest", "Always")
        assert "patch" not in admit(server, plain)["response"]
        opted = deployment_pod(
            f"{HARBOR}/a/b:latest", "Always", annotations={"image-sync.io/enabled": "true"}
        )
        assert policies(apply_response(opted, admit(server, opted))) == {
            "containers/app": "IfNotPresent"
        }
        assert "LEARNING IS OFF" in server.log()
    finally:
        assert server.stop() == 0


def worker_peak_memory(webhook: WebhookProcess) -> dict[int, int]:
    """Peak resident memory (VmHWM, KiB) of each gunicorn worker."""
    pid = webhook.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    peaks = {}
    for child in children:
        for line in Path(f"/proc/{child}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks[int(child)] = int(line.split()[1])
    return peaks


def test_a_body_over_the_api_servers_limit_is_refused_unread(webhook: WebhookProcess) -> None:
    # Only the headers are sent: the answer comes without the body being read.
    context = ssl.create_default_context(cafile=webhook.tls.ca_file)
    with (
        socket.create_connection(("127.0.0.1", webhook.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls_sock,
    ):
        tls_sock.sendall(
            b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: 3145729\r\n\r\n"
        )
        answer = b""
        while b'"}' not in answer:
            received = tls_sock.recv(65536)
            assert received, answer
            answer += received
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert b"larger than 3145728 bytes" in answer

    def chunks() -> Iterator[bytes]:  # no Content-Length: read up to the limit only
        yield b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "pad": "'
        for _ in range(64):
            yield b"x" * 65536
        yield b'"}'

    chunked = webhook.session.post(
        f"{webhook.url}/mutate", data=chunks(), verify=webhook.tls.ca_file, timeout=10
    )
    assert chunked.status_code == 413


def test_a_body_of_a_million_empty_arrays_is_refused_unparsed(webhook: WebhookProcess) -> None:
    before = worker_peak_memory(webhook)
    body = b'{"apiVersion": "admission.k8s.io/v1", "x": [' + b"[]," * 1_000_000 + b"[]]}"
    assert len(body) <= 3 * 1024 * 1024
    for _ in range(4):
        answer = webhook.post(None, raw=body)
        assert answer.status_code == 400
        assert "JSON containers and elements" in answer.json()["error"]
    after = worker_peak_memory(webhook)
    # Parsing it would take about 88 MiB; refused unparsed, a worker holds the body twice.
    growth = {pid: after[pid] - before.get(pid, after[pid]) for pid in after}
    assert max(growth.values()) < 20 * 1024, growth

"""`image-sync certs --apply`: Secrets and caBundle kept right, idempotently, over real HTTP.

Most tests run against a small fake API (tests/certs/fakeapi.py); the last one runs against
the simulator's API server when it is available.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store

from certs.cluster import Target, apply
from certs.generate import (
    Material,
    generate_ca,
    issue_serving_cert,
    load_cert,
    load_certs,
    service_dns_names,
)
from certs.secret import ca_secret, tls_secret
from imagesync.kubeclient import KubeError, load_api_client
from tests.certs.fakeapi import FakeApi, running_fake_api

SCRIPT = Path(sys.executable).parent / "image-sync"
NS = "image-sync"
DNS = service_dns_names("image-sync-webhook", NS)
SECRET = "image-sync-webhook-tls"
TARGET = Target(NS, SECRET, "image-sync", tuple(DNS), renew_before=timedelta(days=30))


def webhook_configuration(*names: str) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "image-sync"},
        "webhooks": [
            {
                "name": name,
                "admissionReviewVersions": ["v1"],
                "sideEffects": "NoneOnDryRun",
                "clientConfig": {
                    "service": {"name": "image-sync-webhook", "namespace": NS, "path": "/mutate"}
                },
            }
            for name in names
        ],
    }


def run_cli(kubeconfig: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGE_SYNC_")}
    env.pop("POD_NAMESPACE", None)
    return subprocess.run(
        [str(SCRIPT), "certs", "--apply", "--kubeconfig", str(kubeconfig),
         "--service", "image-sync-webhook", "--namespace", NS, *extra],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip


def data(secret: dict[str, Any] | None, key: str) -> bytes:
    assert secret is not None
    return base64.b64decode(secret["data"][key])


def check_installed(api: FakeApi) -> None:
    """The TLS Secret verifies against the caBundle that every webhook carries."""
    tls = api.get("Secret", NS, SECRET)
    ca = api.get("Secret", NS, f"{SECRET}-ca")
    assert tls is not None and ca is not None
    assert tls["type"] == ca["type"] == "kubernetes.io/tls"
    config = api.get("MutatingWebhookConfiguration", "", "image-sync")
    assert config is not None
    bundles = {w["clientConfig"]["caBundle"] for w in config["webhooks"]}
    assert bundles == {tls["data"]["ca.crt"]}
    trusted = load_certs(data(tls, "ca.crt"))
    assert load_cert(data(ca, "tls.crt")) == trusted[0]
    verifier = (
        PolicyBuilder()
        .store(Store(trusted))
        .time(datetime.now(UTC))
        .build_server_verifier(x509.DNSName(DNS[0]))
    )
    verifier.verify(load_cert(data(tls, "tls.crt")), [])


def test_apply_creates_secrets_and_patches_every_webhook(tmp_path: Path) -> None:
    with running_fake_api(tmp_path) as (api, kubeconfig):
        api.put(
            "MutatingWebhookConfiguration",
            "",
            webhook_configuration("pods.image-sync.io", "b.x.io"),
        )
        result = run_cli(kubeconfig)
        assert result.returncode == 0, result.stderr
        assert "set caBundle on 2 webhook(s)" in result.stderr
        check_installed(api)
        assert api.get("Secret", NS, SECRET)["metadata"]["labels"] == {  # type: ignore[index]
            "app.kubernetes.io/managed-by": "image-sync",
            "app.kubernetes.io/component": "webhook-certs",
        }
        # A second run reads and writes nothing.
        api.requests.clear()
        again = run_cli(kubeconfig)
        assert again.returncode == 0, again.stderr
        assert api.writes() == []
        assert "up to date" in again.stderr


def test_apply_renews_close_to_expiry_and_keeps_the_ca(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    ca = generate_ca(now - timedelta(days=400))
    old = issue_serving_cert(ca, DNS, now=now - timedelta(days=350))
    material = Material(ca=ca, serving=old, bundle=(ca.cert,))
    with running_fake_api(tmp_path) as (api, kubeconfig):
        config = webhook_configuration("pods.image-sync.io")
        config["webhooks"][0]["clientConfig"]["caBundle"] = base64.b64encode(ca.cert_pem).decode()
        api.put("MutatingWebhookConfiguration", "", config)
        api.put("Secret", NS, ca_secret(SECRET, NS, ca))
        api.put("Secret", NS, tls_secret(SECRET, NS, material))
        api.requests.clear()
        result = run_cli(kubeconfig)
        assert result.returncode == 0, result.stderr
        assert "kept the CA" in result.stderr
        # Only the TLS Secret changed: the caBundle and the CA Secret stay as they were.
        assert api.writes() == [("PUT", f"/api/v1/namespaces/{NS}/secrets/{SECRET}")]
        assert data(api.get("Secret", NS, SECRET), "tls.crt") != old.cert_pem
        check_installed(api)


def test_apply_replaces_a_foreign_or_broken_secret(tmp_path: Path) -> None:
    with running_fake_api(tmp_path) as (api, kubeconfig):
        api.put("MutatingWebhookConfiguration", "", webhook_configuration("pods.image-sync.io"))
        api.put(
            "Secret",
            NS,
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": SECRET, "namespace": NS, "annotations": {"keep": "me"}},
                "type": "kubernetes.io/tls",
                "data": {"tls.crt": "bm90IGEgY2VydA==", "tls.key": "bm8="},
            },
        )
        result = run_cli(kubeconfig)
        assert result.returncode == 0, result.stderr
        assert "unusable" in result.stderr
        check_installed(api)
        assert api.get("Secret", NS, SECRET)["metadata"]["annotations"] == {"keep": "me"}  # type: ignore[index]


def test_apply_without_the_webhook_configuration_fails_clearly(tmp_path: Path) -> None:
    with running_fake_api(tmp_path) as (api, kubeconfig):
        result = run_cli(kubeconfig, "--webhook-config", "missing")
        assert result.returncode == 1
        assert "MutatingWebhookConfiguration 'missing' not found" in result.stderr
        assert api.writes() == []


def test_apply_starts_over_after_a_conflict(tmp_path: Path) -> None:
    with running_fake_api(tmp_path) as (api, kubeconfig):
        api.put("MutatingWebhookConfiguration", "", webhook_configuration("pods.image-sync.io"))
        api.conflicts = 2
        with load_api_client(str(kubeconfig)) as client:
            applied = apply(client, TARGET, datetime.now(UTC))
        assert applied.webhooks_patched == 1
        check_installed(api)
        api.conflicts = 10
        with load_api_client(str(kubeconfig)) as client, pytest.raises(KubeError) as caught:
            renamed = dataclasses.replace(TARGET, dns_names=(*DNS, "x.example"))
            apply(client, renamed, datetime.now(UTC))
        assert caught.value.conflict


def test_apply_against_the_simulated_api_server(tmp_path: Path) -> None:
    """The shipped webhook configuration, then the command the bootstrap Job runs."""
    testing = pytest.importorskip("simulator.testing", reason="the simulator is not available")
    from kubernetes import client as k8s

    from tests.manifests.render import find, render

    shipped = find(render("base"), "MutatingWebhookConfiguration", "image-sync")
    with testing.running_apiserver() as server:
        client = testing.kube_client(server)
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        admission = k8s.AdmissionregistrationV1Api(client)
        core = k8s.CoreV1Api(client)
        body: Any = k8s.V1MutatingWebhookConfiguration.from_dict(shipped)
        admission.create_mutating_webhook_configuration(body)
        namespace: Any = k8s.V1Namespace.from_dict({"metadata": {"name": NS}})
        try:
            core.create_namespace(namespace)
        except k8s.exceptions.ApiException as exc:
            if exc.status != 409:
                raise
        result = run_cli(kubeconfig)
        assert result.returncode == 0, result.stderr
        assert "set caBundle on 1 webhook(s)" in result.stderr
        again = apply(client, TARGET, datetime.now(UTC))
        assert again.secrets_written == () and again.webhooks_patched == 0
        secret: Any = core.read_namespaced_secret(SECRET, NS, _preload_content=False)
        ca_bundle_b64 = json.loads(secret.data)["data"]["ca.crt"]
        config: Any = admission.read_mutating_webhook_configuration(
            "image-sync", _preload_content=False
        )
        webhooks = json.loads(config.data)["webhooks"]
        assert [w["clientConfig"]["caBundle"] for w in webhooks] == [ca_bundle_b64]
        # Everything else of the shipped configuration is untouched.
        assert webhooks[0]["failurePolicy"] == "Ignore"
        assert (
            webhooks[0]["clientConfig"]["service"]
            == shipped["webhooks"][0]["clientConfig"]["service"]
        )
        client.close()

"""`image-sync certs --apply`: Secrets and caBundle kept right, idempotently, over real HTTP.

Every case runs the real code (the `image-sync certs --apply` command, or `certs.cluster.apply`
with the real `kubernetes` client) against the simulator's API server. Races are real too:
a fault rule holds one of our requests back for a moment and another writer lands first, so
the server itself answers the 409 (stale resourceVersion, object already created) or the 422
(a JSON patch `test` that no longer holds).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store
from kubernetes import client as k8s

from certs.cluster import ATTEMPTS, Applied, Target, apply
from certs.generate import generate_ca, issue_serving_cert
from certs.material import Material
from certs.names import service_dns_names
from certs.pem import load_cert, load_certs
from certs.secret import ca_secret, tls_secret
from imagesync.kubeclient import KubeError
from simulator.apiserver import ApiServer, FaultRule
from simulator.testing import kube_client, running_apiserver

SCRIPT = Path(sys.executable).parent / "image-sync"
NS = "image-sync"
DNS = service_dns_names("image-sync-webhook", NS)
SECRET = "image-sync-webhook-tls"
CA_SECRET = f"{SECRET}-ca"
WEBHOOK_CONFIG = "image-sync"
TARGET = Target(NS, SECRET, WEBHOOK_CONFIG, tuple(DNS), renew_before=timedelta(days=30))
SECRET_PATH = rf"/api/v1/namespaces/{NS}/secrets/{SECRET}$"
SECRETS_PATH = rf"/api/v1/namespaces/{NS}/secrets$"
WEBHOOK_CONFIG_PATH = (
    rf"/apis/admissionregistration\.k8s\.io/v1/mutatingwebhookconfigurations/{WEBHOOK_CONFIG}$"
)
WRITES = ("create", "update", "patch", "delete", "deletecollection")
# How long a held-back request waits before the server serves it: ample time for the other
# writer (a few milliseconds of work) to land first, even on a busy machine.
HOLD = 1.0


def webhook_configuration(*names: str) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": WEBHOOK_CONFIG},
        "webhooks": [webhook(name) for name in names],
    }


def webhook(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "admissionReviewVersions": ["v1"],
        "sideEffects": "NoneOnDryRun",
        "clientConfig": {
            "service": {"name": "image-sync-webhook", "namespace": NS, "path": "/mutate"}
        },
    }


@dataclasses.dataclass
class Cluster:
    """The simulated API server, a real client for it and a kubeconfig naming it."""

    server: ApiServer
    client: k8s.ApiClient
    kubeconfig: Path

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.client)

    @property
    def admission(self) -> k8s.AdmissionregistrationV1Api:
        return k8s.AdmissionregistrationV1Api(self.client)

    def secret(self, name: str) -> dict[str, Any] | None:
        return self._get(self.core.read_namespaced_secret, name, NS)

    def webhook_configuration(self) -> dict[str, Any] | None:
        return self._get(self.admission.read_mutating_webhook_configuration, WEBHOOK_CONFIG)

    @staticmethod
    def _get(call: Callable[..., Any], *args: str) -> dict[str, Any] | None:
        try:
            response = call(*args, _preload_content=False)
        except k8s.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        body: dict[str, Any] = json.loads(response.data)
        return body

    def create_secret(self, body: Any) -> None:
        self.core.create_namespaced_secret(NS, body, _preload_content=False)

    def create_webhook_configuration(self, body: Any) -> None:
        self.admission.create_mutating_webhook_configuration(body, _preload_content=False)

    def versions(self) -> dict[str, str | None]:
        """The resourceVersion of each object `certs --apply` manages (None: absent)."""
        objects = {
            SECRET: self.secret(SECRET),
            CA_SECRET: self.secret(CA_SECRET),
            WEBHOOK_CONFIG: self.webhook_configuration(),
        }
        return {k: o["metadata"]["resourceVersion"] if o else None for k, o in objects.items()}

    def count(self, path: str = ".*", verbs: tuple[str, ...] = WRITES) -> FaultRule:
        """A rule with no effect: its `fired` counts the matching requests from now on."""
        rule = FaultRule(path=path, verbs=verbs)
        self.server.add_fault(rule)
        return rule


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_apiserver() as server, kube_client(server) as api_client:
        namespace: Any = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}
        try:
            k8s.CoreV1Api(api_client).create_namespace(namespace, _preload_content=False)
        except k8s.ApiException as exc:
            if exc.status != 409:
                raise
        yield Cluster(server, api_client, server.write_kubeconfig(tmp_path / "kubeconfig"))


class Meanwhile:
    """Another writer: whenever `rule` holds one of our requests back, `write` runs first.

    `write` gets its own client and the number of the held-back request (1, 2, ...); it runs
    in a thread while our request waits (`rule.latency`), so the server serves our request
    after the other write, and answers it as it would answer the loser of a real race.
    """

    def __init__(
        self, cluster: Cluster, rule: FaultRule, write: Callable[[k8s.ApiClient, int], None]
    ) -> None:
        self.server = cluster.server
        self.rule = rule
        self.write = write
        self.writes = 0
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Meanwhile:
        self.server.add_fault(self.rule)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.server.set_faults([r for r in self.server.faults.rules if r is not self.rule])
        if self._error is not None and exc is None:
            raise self._error

    def _run(self) -> None:
        with kube_client(self.server) as api_client:
            while not self._stop.is_set():
                if self.rule.fired <= self.writes:
                    time.sleep(0.005)
                    continue
                self.writes += 1
                try:
                    self.write(api_client, self.writes)
                except BaseException as exc:  # reported by __exit__
                    self._error = exc
                    return


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


def check_installed(cluster: Cluster) -> None:
    """The TLS Secret verifies against the caBundle that every webhook carries."""
    tls = cluster.secret(SECRET)
    ca = cluster.secret(CA_SECRET)
    assert tls is not None and ca is not None
    assert tls["type"] == ca["type"] == "kubernetes.io/tls"
    config = cluster.webhook_configuration()
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


def dns_names(secret: dict[str, Any] | None) -> list[str]:
    cert = load_cert(data(secret, "tls.crt"))
    return cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)


def restarts(caplog: pytest.LogCaptureFixture) -> int:
    return sum("conflict, starting over" in r.getMessage() for r in caplog.records)


def test_apply_creates_secrets_and_patches_every_webhook(cluster: Cluster) -> None:
    cluster.create_webhook_configuration(webhook_configuration("pods.image-sync.io", "b.x.io"))
    result = run_cli(cluster.kubeconfig)
    assert result.returncode == 0, result.stderr
    assert "set caBundle on 2 webhook(s)" in result.stderr
    check_installed(cluster)
    assert cluster.secret(SECRET)["metadata"]["labels"] == {  # type: ignore[index]
        "app.kubernetes.io/managed-by": "image-sync",
        "app.kubernetes.io/component": "webhook-certs",
    }
    # A second run writes nothing: no write request at all, every resourceVersion unchanged.
    before = cluster.versions()
    writes = cluster.count()
    again = run_cli(cluster.kubeconfig)
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stderr
    assert writes.fired == 0
    assert cluster.versions() == before


def test_apply_renews_close_to_expiry_and_keeps_the_ca(cluster: Cluster) -> None:
    now = datetime.now(UTC)
    ca = generate_ca(now - timedelta(days=400))
    old = issue_serving_cert(ca, DNS, now=now - timedelta(days=350))
    material = Material(ca=ca, serving=old, bundle=(ca.cert,))
    config = webhook_configuration("pods.image-sync.io")
    config["webhooks"][0]["clientConfig"]["caBundle"] = base64.b64encode(ca.cert_pem).decode()
    cluster.create_webhook_configuration(config)
    cluster.create_secret(ca_secret(SECRET, NS, ca))
    cluster.create_secret(tls_secret(SECRET, NS, material))
    before = cluster.versions()
    writes = cluster.count()
    tls_writes = cluster.count(SECRET_PATH, ("update",))
    result = run_cli(cluster.kubeconfig)
    assert result.returncode == 0, result.stderr
    assert "kept the CA" in result.stderr
    # Only the TLS Secret changed: the caBundle and the CA Secret stay as they were.
    assert writes.fired == tls_writes.fired == 1
    after = cluster.versions()
    assert after[SECRET] != before[SECRET]
    assert {k: v for k, v in after.items() if k != SECRET} == {
        k: v for k, v in before.items() if k != SECRET
    }
    assert data(cluster.secret(SECRET), "tls.crt") != old.cert_pem
    check_installed(cluster)


def test_apply_replaces_a_foreign_or_broken_secret(cluster: Cluster) -> None:
    cluster.create_webhook_configuration(webhook_configuration("pods.image-sync.io"))
    cluster.create_secret(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET, "namespace": NS, "annotations": {"keep": "me"}},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": "bm90IGEgY2VydA==", "tls.key": "bm8="},
        }
    )
    result = run_cli(cluster.kubeconfig)
    assert result.returncode == 0, result.stderr
    assert "unusable" in result.stderr
    check_installed(cluster)
    assert cluster.secret(SECRET)["metadata"]["annotations"] == {"keep": "me"}  # type: ignore[index]


def test_apply_without_the_webhook_configuration_fails_clearly(cluster: Cluster) -> None:
    cluster.create_webhook_configuration(webhook_configuration("pods.image-sync.io"))
    writes = cluster.count()
    result = run_cli(cluster.kubeconfig, "--webhook-config", "missing")
    assert result.returncode == 1
    assert "MutatingWebhookConfiguration 'missing' not found" in result.stderr
    assert writes.fired == 0
    assert cluster.secret(SECRET) is None and cluster.secret(CA_SECRET) is None


def test_apply_starts_over_after_a_conflict(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """Someone else updates the TLS Secret between our read and our write: 409, start over."""
    caplog.set_level(logging.INFO, logger="certs.cluster")
    cluster.create_webhook_configuration(webhook_configuration("pods.image-sync.io"))
    apply(cluster.client, TARGET, datetime.now(UTC))

    def touch(api_client: k8s.ApiClient, n: int) -> None:
        patch = {"metadata": {"annotations": {"example.com/touched": str(n)}}}
        k8s.CoreV1Api(api_client).patch_namespaced_secret(SECRET, NS, patch, _preload_content=False)

    # A new DNS name: the TLS Secret must be replaced, and the first two tries lose the race.
    renamed = dataclasses.replace(TARGET, dns_names=(*DNS, "x.example"))
    held = FaultRule(path=SECRET_PATH, verbs=("update",), latency=HOLD, times=2)
    with Meanwhile(cluster, held, touch) as other:
        applied = apply(cluster.client, renamed, datetime.now(UTC))
    assert other.writes == 2 and restarts(caplog) == 2
    assert applied.secrets_written == (SECRET,)
    tls = cluster.secret(SECRET)
    assert "x.example" in dns_names(tls)
    # Each try read the Secret again: the other writer's annotation is kept.
    assert tls["metadata"]["annotations"] == {"example.com/touched": "2"}  # type: ignore[index]
    check_installed(cluster)

    # Losing every time: give up after the last attempt, with the conflict as the error.
    caplog.clear()
    renamed_again = dataclasses.replace(TARGET, dns_names=(*DNS, "y.example"))
    always = FaultRule(path=SECRET_PATH, verbs=("update",), latency=HOLD)
    with Meanwhile(cluster, always, touch) as other, pytest.raises(KubeError) as caught:
        apply(cluster.client, renamed_again, datetime.now(UTC))
    assert caught.value.conflict
    assert always.fired == ATTEMPTS and restarts(caplog) == ATTEMPTS
    assert "y.example" not in dns_names(cluster.secret(SECRET))


def test_two_runs_racing_on_a_fresh_cluster_agree(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """Our first create is held back while another run installs everything: 409, start over."""
    caplog.set_level(logging.INFO, logger="certs.cluster")
    cluster.create_webhook_configuration(webhook_configuration("pods.image-sync.io"))
    results: list[Applied] = []

    def other_run(api_client: k8s.ApiClient, n: int) -> None:
        results.append(apply(api_client, TARGET, datetime.now(UTC)))

    held = FaultRule(path=SECRETS_PATH, verbs=("create",), latency=HOLD, times=1)
    with Meanwhile(cluster, held, other_run):
        ours = apply(cluster.client, TARGET, datetime.now(UTC))
    assert restarts(caplog) == 1
    [theirs] = results
    assert theirs.secrets_written == (CA_SECRET, SECRET) and theirs.webhooks_patched == 1
    # Starting over, ours read what the other run wrote and kept it as it was.
    assert ours.secrets_written == () and ours.webhooks_patched == 0
    assert ours.outcome.material.ca.cert == theirs.outcome.material.ca.cert
    check_installed(cluster)


def test_apply_starts_over_when_the_webhook_configuration_changed(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """A webhook inserted between our read and our patch: the patch's `test` fails, 422."""
    caplog.set_level(logging.INFO, logger="certs.cluster")
    cluster.create_webhook_configuration(webhook_configuration("pods.image-sync.io"))

    def insert_webhook(api_client: k8s.ApiClient, n: int) -> None:
        admission = k8s.AdmissionregistrationV1Api(api_client)
        response: Any = admission.read_mutating_webhook_configuration(
            WEBHOOK_CONFIG, _preload_content=False
        )
        config = json.loads(response.data)
        config["webhooks"].insert(0, webhook("first.x.io"))
        admission.replace_mutating_webhook_configuration(
            WEBHOOK_CONFIG, config, _preload_content=False
        )

    held = FaultRule(path=WEBHOOK_CONFIG_PATH, verbs=("patch",), latency=HOLD, times=1)
    with Meanwhile(cluster, held, insert_webhook) as other:
        applied = apply(cluster.client, TARGET, datetime.now(UTC))
    assert other.writes == 1 and restarts(caplog) == 1
    assert applied.webhooks_patched == 2
    config = cluster.webhook_configuration()
    assert config is not None
    assert [w["name"] for w in config["webhooks"]] == ["first.x.io", "pods.image-sync.io"]
    check_installed(cluster)


def test_apply_with_the_shipped_webhook_configuration(cluster: Cluster) -> None:
    """The shipped webhook configuration, then the command the bootstrap Job runs."""
    from tests.manifests.render import find, render

    shipped = find(render("base"), "MutatingWebhookConfiguration", WEBHOOK_CONFIG)
    cluster.create_webhook_configuration(shipped)
    result = run_cli(cluster.kubeconfig)
    assert result.returncode == 0, result.stderr
    assert "set caBundle on 1 webhook(s)" in result.stderr
    again = apply(cluster.client, TARGET, datetime.now(UTC))
    assert again.secrets_written == () and again.webhooks_patched == 0
    check_installed(cluster)
    config = cluster.webhook_configuration()
    assert config is not None
    webhooks = config["webhooks"]
    # Everything else of the shipped configuration is untouched.
    assert webhooks[0]["failurePolicy"] == "Ignore"
    assert (
        webhooks[0]["clientConfig"]["service"] == shipped["webhooks"][0]["clientConfig"]["service"]
    )


def test_apply_sets_the_pod_guards_ca_bundle_when_it_is_installed(cluster: Cluster) -> None:
    """The bootstrap Job names the pod guard's ValidatingWebhookConfiguration too: it gets the
    same caBundle; an install without it (the admission-policy overlay) is no error."""
    from tests.manifests.render import find, render

    base = render("base")
    cluster.create_webhook_configuration(find(base, "MutatingWebhookConfiguration", WEBHOOK_CONFIG))
    guard = "image-sync-pod-guard"
    without = run_cli(cluster.kubeconfig, "--validating-webhook-config", guard)
    assert without.returncode == 0, without.stderr
    untyped_admission: Any = cluster.admission
    untyped_admission.create_validating_webhook_configuration(
        find(base, "ValidatingWebhookConfiguration", guard), _preload_content=False
    )
    result = run_cli(cluster.kubeconfig, "--validating-webhook-config", guard)
    assert result.returncode == 0, result.stderr
    assert "set caBundle on 1 webhook(s)" in result.stderr
    stored = cluster._get(cluster.admission.read_validating_webhook_configuration, guard)
    mutating = cluster.webhook_configuration()
    assert stored is not None and mutating is not None
    bundle = stored["webhooks"][0]["clientConfig"]["caBundle"]
    assert bundle and bundle == mutating["webhooks"][0]["clientConfig"]["caBundle"]
    again = run_cli(cluster.kubeconfig, "--validating-webhook-config", guard)
    assert "up to date" in again.stderr

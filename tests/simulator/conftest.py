"""Fixtures for the simulated API server tests: a server, a real client, and kubectl."""

from __future__ import annotations

import datetime
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client

from simulator.apiserver import ApiServer
from simulator.testing import kube_client, running_apiserver
from tests.skips import skip_without


@pytest.fixture
def apiserver() -> Iterator[ApiServer]:
    with running_apiserver(bookmark_interval=0.2) as server:
        yield server


@pytest.fixture
def api(apiserver: ApiServer) -> Iterator[client.ApiClient]:
    c = kube_client(apiserver)
    yield c
    c.close()


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def kubeconfig(apiserver: ApiServer, tmp_path: Path) -> Path:
    return apiserver.write_kubeconfig(tmp_path / "kubeconfig")


class Kubectl:
    """Runs kubectl against the simulator; `run` raises on failure, `try_run` does not."""

    def __init__(self, binary: str, kubeconfig: Path) -> None:
        self.binary = binary
        self.kubeconfig = kubeconfig

    def try_run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, "--kubeconfig", str(self.kubeconfig), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def run(self, *args: str, stdin: str | None = None) -> str:
        done = self.try_run(*args, stdin=stdin)
        assert done.returncode == 0, f"kubectl {' '.join(args)} failed: {done.stderr}"
        return done.stdout


def find_kubectl() -> str | None:
    """kubectl on PATH, else the one scripts/ensure-kubectl puts into the virtualenv."""
    venv = Path(sys.executable).parent / "kubectl"
    return shutil.which("kubectl") or (str(venv) if venv.exists() else None)


@pytest.fixture
def kubectl(kubeconfig: Path) -> Kubectl:
    binary = find_kubectl()
    if binary is None:
        skip_without("kubectl", "run scripts/ensure-kubectl (make install does)")
    return Kubectl(binary, kubeconfig)


def pod_body(
    name: str = "", *, generate: str = "", node: str = "", **spec_extra: object
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name} if name else {"generateName": generate}
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox:1.36"}], **spec_extra}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def make_cert(tmp: Path, sans: list[x509.GeneralName]) -> tuple[bytes, Path, Path]:
    """A throwaway CA and a serving certificate for `sans`: (CA PEM, cert file, key file)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hook")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "tls.crt", tmp / "tls.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca.public_bytes(serialization.Encoding.PEM), cert_file, key_file

"""A real webhook: `image-sync webhook` (gunicorn over TLS) in a subprocess on 127.0.0.1."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from certs.generate import generate_ca, issue_serving_cert
from certs.pem import KeyPair
from tests.webhook.pods import REGISTRIES

IMAGE_SYNC = str(Path(sys.executable).with_name("image-sync"))
STARTUP_DEADLINE = 90.0
# The names an API server verifies when it calls the webhook through its Service.
SERVICE_NAMES = (
    "image-sync-webhook.image-sync.svc",
    "image-sync-webhook.image-sync.svc.cluster.local",
)


@dataclass
class Tls:
    directory: Path
    ca: KeyPair

    @property
    def ca_file(self) -> str:
        return str(self.directory / "ca.crt")

    @property
    def cert_file(self) -> str:
        return str(self.directory / "tls.crt")

    @property
    def key_file(self) -> str:
        return str(self.directory / "tls.key")

    def issue(self) -> KeyPair:
        """Write a new serving certificate from the same CA, atomically (as a Secret update)."""
        pair = issue_serving_cert(
            self.ca,
            ["localhost", *SERVICE_NAMES],
            [ipaddress.ip_address("127.0.0.1")],
            now=datetime.now(UTC),
        )
        for path, data in ((self.key_file, pair.key_pem), (self.cert_file, pair.cert_pem)):
            tmp = f"{path}.tmp"
            Path(tmp).write_bytes(data)
            os.replace(tmp, path)
        return pair


def make_tls(directory: Path) -> Tls:
    directory.mkdir(parents=True, exist_ok=True)
    ca = generate_ca(datetime.now(UTC))
    (directory / "ca.crt").write_bytes(ca.cert_pem)
    tls = Tls(directory, ca)
    tls.issue()
    return tls


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class WebhookProcess:
    tls: Tls
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    session: requests.Session = field(default_factory=requests.Session)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def post(self, body: Any, *, raw: bytes | None = None) -> requests.Response:
        if raw is not None:
            return self.session.post(
                f"{self.url}/mutate", data=raw, verify=self.tls.ca_file, timeout=10
            )
        return self.session.post(
            f"{self.url}/mutate", json=body, verify=self.tls.ca_file, timeout=10
        )

    def get(self, path: str) -> requests.Response:
        return self.session.get(f"{self.url}{path}", verify=self.tls.ca_file, timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM (graceful: workers flush their learner), then wait for the exit status."""
        self.session.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_webhook(
    tmp: Path,
    tls: Tls,
    *,
    workers: int = 2,
    env: dict[str, str] | None = None,
    kubeconfig: str | None = None,
) -> WebhookProcess:
    port = free_port()
    log_path = tmp / f"webhook-{port}.log"
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IMAGE_SYNC_", "KUBERNETES_", "PROMETHEUS_"))
    }
    environment.pop("KUBECONFIG", None)
    environment.update({"IMAGE_SYNC_REGISTRIES": REGISTRIES, "IMAGE_SYNC_LOG_LEVEL": "info"})
    environment.update(env or {})
    command = [
        IMAGE_SYNC,
        "webhook",
        "--cert",
        tls.cert_file,
        "--key",
        tls.key_file,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
    ]
    if kubeconfig:
        command += ["--kubeconfig", kubeconfig]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, env=environment
        )
    server = WebhookProcess(tls, port, process, log_path)
    deadline = time.monotonic() + STARTUP_DEADLINE
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"webhook exited with {process.returncode}:\n{server.log()}")
        try:
            if server.get("/healthz").status_code == 200:
                return server
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"webhook did not come up:\n{server.log()}")
        time.sleep(0.1)


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory, tls: Tls) -> Iterator[WebhookProcess]:
    """The default webhook: opt-out mode, learning off, two workers."""
    server = start_webhook(tmp_path_factory.mktemp("webhook"), tls)
    yield server
    server.stop()

"""A real CNCF distribution registry (Debian's `docker-registry`) on loopback, with TLS and
htpasswd basic auth, and images pushed to it with plain HTTP calls (no container engine).

`scripts/ensure-registry` (run by `make install`) installs the package. Without the binary the
tests skip, unless `IMAGE_SYNC_REQUIRE_REGISTRY=1` (set by `.ci/run`) makes them fail.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests

from certs.generate import generate_ca, issue_serving_cert
from certs.pem import cert_to_pem, key_to_pem

REQUIRE_ENV = "IMAGE_SYNC_REQUIRE_REGISTRY"
USER, PASSWORD = "robot-sync", "s3cret-pass"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def registry_binary() -> str:
    """The registry binary, or skip (fail when required)."""
    found = shutil.which("docker-registry") or shutil.which("registry")
    if found is None:
        message = "docker-registry not found: run scripts/ensure-registry (Debian docker-registry)"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class RealRegistry:
    """A running registry: its URL, the CA that signed its certificate, and a pusher."""

    url: str
    host: str  # 127.0.0.1:PORT, as an image reference names it
    ca_file: str
    process: subprocess.Popen[bytes]

    def _session(self) -> requests.Session:
        session = requests.Session()
        session.auth = (USER, PASSWORD)
        session.trust_env = False  # REQUESTS_CA_BUNDLE would override `verify`
        session.verify = self.ca_file
        return session

    def push_blob(self, repository: str, data: bytes) -> dict[str, Any]:
        """A monolithic blob upload (POST, then PUT with the digest); its descriptor."""
        session = self._session()
        digest = digest_of(data)
        started = session.post(f"{self.url}/v2/{repository}/blobs/uploads/", timeout=30)
        assert started.status_code == 202, started.text
        location = started.headers["Location"]
        if location.startswith("/"):
            location = self.url + location
        done = session.put(
            location,
            params={"digest": digest},
            data=data,
            headers={"Content-Type": "application/octet-stream"},
            timeout=30,
        )
        assert done.status_code == 201, done.text
        return {"digest": digest, "size": len(data)}

    def push_manifest(self, repository: str, reference: str, body: dict[str, Any]) -> str:
        data = json.dumps(body).encode()
        response = self._session().put(
            f"{self.url}/v2/{repository}/manifests/{reference}",
            data=data,
            headers={"Content-Type": body["mediaType"]},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        return digest_of(data)

    def push_image(
        self,
        repository: str,
        tag: str,
        *,
        created: datetime,
        layer_bytes: int = 2048,
        archs: tuple[str, ...] = ("amd64",),
    ) -> str:
        """Push `repository:tag`: one manifest per arch (config + one layer), under an image
        index when there are several. Returns the tag's digest."""
        entries = []
        for arch in archs:
            config = json.dumps(
                {
                    "architecture": arch,
                    "os": "linux",
                    "created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "rootfs": {"type": "layers", "diff_ids": []},
                    "config": {},
                }
            ).encode()
            layer = hashlib.sha256(f"{repository}:{tag}:{arch}".encode()).digest()
            layer = (layer * (layer_bytes // len(layer) + 1))[:layer_bytes]
            manifest = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, **self.push_blob(repository, config)},
                "layers": [{"mediaType": OCI_LAYER, **self.push_blob(repository, layer)}],
            }
            if len(archs) == 1:
                return self.push_manifest(repository, tag, manifest)
            data = json.dumps(manifest).encode()
            digest = self.push_manifest(repository, digest_of(data), manifest)
            entries.append(
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": digest,
                    "size": len(data),
                    "platform": {"os": "linux", "architecture": arch},
                }
            )
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        return self.push_manifest(repository, tag, index)


def start_registry(workdir: Path) -> RealRegistry:
    """Run the registry on a free loopback port with TLS and htpasswd; wait until it answers."""
    binary = registry_binary()
    now = datetime.now(UTC)
    ca = generate_ca(now)
    leaf = issue_serving_cert(ca, ["localhost"], [ipaddress.ip_address("127.0.0.1")], now=now)
    (workdir / "ca.crt").write_bytes(cert_to_pem(ca.cert))
    (workdir / "tls.crt").write_bytes(cert_to_pem(leaf.cert))
    (workdir / "tls.key").write_bytes(key_to_pem(leaf.key))
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    (workdir / "htpasswd").write_text(f"{USER}:{hashed}\n")
    port = _free_port()
    config = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "data")}},
        "http": {
            "addr": f"127.0.0.1:{port}",
            "tls": {"certificate": str(workdir / "tls.crt"), "key": str(workdir / "tls.key")},
        },
        "auth": {"htpasswd": {"realm": "image-sync-test", "path": str(workdir / "htpasswd")}},
    }
    (workdir / "config.yml").write_text(json.dumps(config))  # JSON is YAML
    log = (workdir / "registry.log").open("wb")
    process = subprocess.Popen(
        [binary, "serve", str(workdir / "config.yml")], stdout=log, stderr=subprocess.STDOUT
    )
    registry = RealRegistry(
        f"https://127.0.0.1:{port}", f"127.0.0.1:{port}", str(workdir / "ca.crt"), process
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"registry exited: {(workdir / 'registry.log').read_text()}")
        try:
            answer = requests.get(f"{registry.url}/v2/", verify=registry.ca_file, timeout=2)
            if answer.status_code == 401:
                return registry
        except requests.RequestException:
            pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError("the registry did not answer within 30 s")


def stop_registry(registry: RealRegistry) -> None:
    registry.process.terminate()
    try:
        registry.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        registry.process.kill()
        registry.process.wait(timeout=10)

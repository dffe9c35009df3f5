"""A real TLS handshake with generated certificates, as the API server makes it."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from certs import files
from certs.material import Existing, ensure, existing_from_pem
from certs.names import service_dns_names, split_sans

DNS = service_dns_names("image-sync-webhook", "image-sync")


@contextmanager
def tls_server(cert: Path, key: Path) -> Iterator[int]:
    """Serve TLS on loopback; each connection gets b"ok" after the handshake."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")
            except (ssl.SSLError, OSError):
                pass  # a client that rejected us

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        stop.set()
        thread.join()
        listener.close()


def handshake(port: int, cafile: Path, server_hostname: str) -> bytes:
    context = ssl.create_default_context(cafile=str(cafile))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=server_hostname) as tls,
    ):
        return tls.recv(2)


@pytest.fixture
def cert_dir(tmp_path: Path) -> Path:
    dns, ips = split_sans(["127.0.0.1", "webhook.example.internal"])
    material = ensure(Existing(), [*DNS, *dns], ips).material
    files.write_material(tmp_path, material)
    return tmp_path


def test_handshake_with_service_names(cert_dir: Path) -> None:
    with tls_server(cert_dir / "tls.crt", cert_dir / "tls.key") as port:
        for name in [*DNS, "webhook.example.internal"]:
            assert handshake(port, cert_dir / "ca.crt", name) == b"ok"


def test_handshake_with_an_ip_san(cert_dir: Path) -> None:
    with tls_server(cert_dir / "tls.crt", cert_dir / "tls.key") as port:
        assert handshake(port, cert_dir / "ca.crt", "127.0.0.1") == b"ok"


def test_wrong_name_or_ca_is_refused(
    cert_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = tmp_path_factory.mktemp("other")
    files.write_material(other, ensure(Existing(), DNS).material)
    with tls_server(cert_dir / "tls.crt", cert_dir / "tls.key") as port:
        with pytest.raises(ssl.SSLCertVerificationError, match=r"mismatch|doesn't match"):
            handshake(port, cert_dir / "ca.crt", "image-sync-webhook.default.svc")
        with pytest.raises(ssl.SSLCertVerificationError):
            handshake(port, other / "ca.crt", DNS[0])


def test_renewed_certificate_is_trusted_by_the_old_bundle(tmp_path: Path) -> None:
    """The caBundle the API server holds does not change when the certificate is renewed."""
    start = datetime.now(UTC) - timedelta(days=340)
    first = ensure(Existing(), DNS, now=start).material
    stored = existing_from_pem(
        first.bundle_pem, first.ca.key_pem, first.serving.cert_pem, first.serving.key_pem
    )
    renewed = ensure(stored, DNS)
    assert renewed.serving_reason and renewed.ca_reason is None
    (tmp_path / "old-ca.crt").write_bytes(first.bundle_pem)
    files.write_material(tmp_path / "new", renewed.material)
    with tls_server(tmp_path / "new" / "tls.crt", tmp_path / "new" / "tls.key") as port:
        assert handshake(port, tmp_path / "old-ca.crt", DNS[0]) == b"ok"

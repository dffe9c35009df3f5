"""`image-sync certs` as a user runs it: a subprocess of the installed console script."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from cryptography import x509

from certs import files
from certs.generate import generate_ca, issue_serving_cert
from certs.names import service_dns_names
from certs.pem import load_cert
from certs.renewal import needs_renewal

SCRIPT = Path(sys.executable).parent / "image-sync"
BASE = ["certs", "--service", "image-sync-webhook", "--namespace", "image-sync"]
DNS = service_dns_names("image-sync-webhook", "image-sync")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("IMAGE_SYNC_") and k not in {"KUBECONFIG", "POD_NAMESPACE"}
    }
    return subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        timeout=60,
        check=False,
    )


def test_writes_the_three_files_and_more_sans(tmp_path: Path) -> None:
    result = run(*BASE, "--out", str(tmp_path), "--san", "10.96.0.10", "--san", "webhook.local")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert {"ca.crt", "tls.crt", "tls.key"} <= {p.name for p in tmp_path.iterdir()}
    assert stat.S_IMODE((tmp_path / "tls.key").stat().st_mode) == 0o600
    cert = load_cert((tmp_path / "tls.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [*DNS, "webhook.local"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.96.0.10"]
    assert "new CA" in result.stderr


def test_second_run_changes_nothing(tmp_path: Path) -> None:
    assert run(*BASE, "--out", str(tmp_path)).returncode == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    again = run(*BASE, "--out", str(tmp_path))
    assert again.returncode == 0, again.stderr
    assert "up to date" in again.stderr
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def _near_expiry(directory: Path, days_left: int) -> None:
    now = datetime.now(UTC)
    ca = generate_ca(now - timedelta(days=400))
    leaf = issue_serving_cert(ca, DNS, now=now - timedelta(days=365 - days_left))
    files.atomic_write(directory / "ca.crt", ca.cert_pem, 0o644)
    files.atomic_write(directory / "ca.key", ca.key_pem, 0o600)
    files.atomic_write(directory / "tls.crt", leaf.cert_pem, 0o644)
    files.atomic_write(directory / "tls.key", leaf.key_pem, 0o600)


def test_renews_close_to_expiry_and_keeps_the_ca(tmp_path: Path) -> None:
    _near_expiry(tmp_path, days_left=15)
    ca_before = (tmp_path / "ca.crt").read_bytes()
    tls_before = (tmp_path / "tls.crt").read_bytes()
    result = run(*BASE, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "kept the CA" in result.stderr and "renewal margin" in result.stderr
    assert (tmp_path / "ca.crt").read_bytes() == ca_before
    assert (tmp_path / "tls.crt").read_bytes() != tls_before
    assert not needs_renewal(
        (tmp_path / "tls.crt").read_bytes(), datetime.now(UTC), dns_names=DNS, ca_pem=ca_before
    )


def test_renew_before_is_configurable(tmp_path: Path) -> None:
    _near_expiry(tmp_path, days_left=15)
    tls_before = (tmp_path / "tls.crt").read_bytes()
    result = run(*BASE, "--out", str(tmp_path), "--renew-before", "10d")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "tls.crt").read_bytes() == tls_before
    result = run(*BASE, "--out", str(tmp_path), "--renew-before", "5%")
    assert (tmp_path / "tls.crt").read_bytes() != tls_before  # 5 % of a year is about 18 days


def test_secret_manifest_to_stdout(tmp_path: Path) -> None:
    result = run(*BASE, "--secret-manifest", "-", "--secret-name", "my-tls")
    assert result.returncode == 0, result.stderr
    docs = list(yaml.safe_load_all(result.stdout))
    assert len(docs) == 1
    secret = docs[0]
    assert secret["apiVersion"] == "v1" and secret["kind"] == "Secret"
    assert secret["type"] == "kubernetes.io/tls"
    assert secret["metadata"]["name"] == "my-tls"
    assert secret["metadata"]["namespace"] == "image-sync"
    assert set(secret["data"]) == {"ca.crt", "tls.crt", "tls.key"}
    kubernetes_validate.validate(secret, "1.31.0", strict=True)
    decoded = {k: base64.b64decode(v) for k, v in secret["data"].items()}
    leaf = load_cert(decoded["tls.crt"])
    leaf.verify_directly_issued_by(load_cert(decoded["ca.crt"]))
    assert b"PRIVATE KEY" in decoded["tls.key"]


def test_secret_manifest_file_matches_the_files(tmp_path: Path) -> None:
    manifest = tmp_path / "secret.yaml"
    out = tmp_path / "certs"
    result = run(*BASE, "--out", str(out), "--secret-manifest", str(manifest))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(manifest.stat().st_mode) == 0o600  # it holds a private key
    secret = yaml.safe_load(manifest.read_text())
    assert base64.b64decode(secret["data"]["tls.crt"]) == (out / "tls.crt").read_bytes()
    assert base64.b64decode(secret["data"]["ca.crt"]) == (out / "ca.crt").read_bytes()


def test_namespace_defaults_to_pod_namespace(tmp_path: Path) -> None:
    result = run(
        "certs", "--service", "hook", "--out", str(tmp_path), env={"POD_NAMESPACE": "tenant-a"}
    )
    assert result.returncode == 0, result.stderr
    cert = load_cert((tmp_path / "tls.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName)[0] == "hook.tenant-a.svc"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "nothing to do"),
        (("--out", "{tmp}", "--san", "not a name"), "neither an IP address nor a DNS name"),
        (("--out", "{tmp}", "--renew-before", "soon"), "expected a duration"),
        (("--out", "{tmp}", "--kubeconfig", "/nonexistent"), "only used with --apply"),
    ],
)
def test_usage_errors(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = run(*BASE, *(a.format(tmp=tmp_path) for a in args))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_service_is_required() -> None:
    result = run("certs", "--out", "/tmp/x")
    assert result.returncode == 2 and "--service" in result.stderr


def test_unwritable_output_is_a_clear_failure(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run(*BASE, "--out", str(blocker / "certs"))
    assert result.returncode == 1
    assert "cannot write" in result.stderr and "Traceback" not in result.stderr


def test_apply_without_a_cluster_is_a_clear_failure(tmp_path: Path) -> None:
    missing = tmp_path / "kubeconfig"
    result = run(*BASE, "--apply", "--kubeconfig", str(missing))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    result = run(*BASE, "--apply")  # no kubeconfig, not in a cluster
    assert result.returncode == 1
    assert "not running in a cluster" in result.stderr

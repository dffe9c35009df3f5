"""The pure certificate core: chain, names, usages, and the renewal rules at chosen instants."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from certs.generate import generate_ca, issue_serving_cert
from certs.material import Existing, ensure, existing_from_pem
from certs.names import service_dns_names, split_sans
from certs.pem import CertError, KeyPair, certs_to_pem, load_certs
from certs.renewal import ca_renewal_reason, needs_renewal, parse_renew_before, renewal_reason
from tests.skips import OPTIONAL

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DNS = service_dns_names("image-sync-webhook", "image-sync")


@pytest.fixture(scope="module")
def ca() -> KeyPair:
    return generate_ca(NOW)


@pytest.fixture(scope="module")
def serving(ca: KeyPair) -> KeyPair:
    return issue_serving_cert(ca, DNS, [ipaddress.ip_address("10.0.0.7")], NOW)


def _verify(ca: x509.Certificate, leaf: x509.Certificate, name: str, at: datetime) -> None:
    verifier = PolicyBuilder().store(Store([ca])).time(at).build_server_verifier(x509.DNSName(name))
    verifier.verify(leaf, [])


def test_service_dns_names() -> None:
    assert DNS == [
        "image-sync-webhook.image-sync.svc",
        "image-sync-webhook.image-sync.svc.cluster.local",
    ]
    for service, namespace in [
        ("", "ns"),
        ("svc", ""),
        ("My-Svc", "ns"),
        ("a.b", "ns"),
        ("svc", "-ns"),
    ]:
        with pytest.raises(CertError):
            service_dns_names(service, namespace)


def test_chain_verifies_for_every_service_name(ca: KeyPair, serving: KeyPair) -> None:
    for name in DNS:
        _verify(ca.cert, serving.cert, name, NOW + timedelta(days=1))
    with pytest.raises(VerificationError):
        _verify(ca.cert, serving.cert, "other.image-sync.svc", NOW + timedelta(days=1))
    other_ca = generate_ca(NOW)
    with pytest.raises(VerificationError):
        _verify(other_ca.cert, serving.cert, DNS[0], NOW + timedelta(days=1))


@pytest.mark.skipif(shutil.which("openssl") is None, reason=f"{OPTIONAL}openssl: install it")
def test_openssl_verifies_the_chain(tmp_path: Path, ca: KeyPair, serving: KeyPair) -> None:
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    (tmp_path / "tls.crt").write_bytes(serving.cert_pem)
    result = subprocess.run(
        [
            "openssl",
            "verify",
            "-attime",
            str(int((NOW + timedelta(days=1)).timestamp())),
            "-purpose",
            "sslserver",
            "-CAfile",
            "ca.crt",
            "tls.crt",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout


def test_ca_extensions(ca: KeyPair) -> None:
    cert = ca.cert
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey) and ca.key.curve.name == "secp256r1"
    lifetime = cert.not_valid_after_utc - NOW
    assert timedelta(days=3649) < lifetime <= timedelta(days=3650)
    assert cert.not_valid_before_utc < NOW  # a little slack for clocks that lag


def test_serving_extensions(ca: KeyPair, serving: KeyPair) -> None:
    cert = serving.cert
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == DNS
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.7")]
    assert cert.issuer == ca.cert.subject
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert cert.not_valid_after_utc - NOW == timedelta(days=365)


def test_serving_cert_never_outlives_its_ca() -> None:
    short_ca = generate_ca(NOW, validity=timedelta(days=100))
    leaf = issue_serving_cert(short_ca, DNS, now=NOW)
    assert leaf.cert.not_valid_after_utc == short_ca.cert.not_valid_after_utc
    with pytest.raises(CertError, match="expired"):
        issue_serving_cert(short_ca, DNS, now=NOW + timedelta(days=101))


def test_rsa_keys() -> None:
    ca = generate_ca(NOW, key_type="rsa")
    leaf = issue_serving_cert(ca, DNS, now=NOW, key_type="rsa")
    assert isinstance(leaf.key, rsa.RSAPrivateKey) and leaf.key.key_size >= 2048
    assert leaf.cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_encipherment
    _verify(ca.cert, leaf.cert, DNS[0], NOW)
    with pytest.raises(CertError):
        generate_ca(NOW, key_type="dsa")


def test_split_sans() -> None:
    dns, ips = split_sans(
        ["10.0.0.1", "Webhook.Example.COM.", "::1", "[fd00::2]", "10.0.0.1", "*.example.com"]
    )
    assert dns == ["webhook.example.com", "*.example.com"]
    assert ips == [ipaddress.ip_address(a) for a in ("10.0.0.1", "::1", "fd00::2")]
    for bad in ("", "bad name", "-x.example.com", "a..b", "x" * 64 + ".com"):
        with pytest.raises(CertError):
            split_sans([bad])


def test_key_must_belong_to_cert(ca: KeyPair, serving: KeyPair) -> None:
    with pytest.raises(CertError, match="does not belong"):
        KeyPair(serving.cert, ca.key)
    with pytest.raises(CertError):
        KeyPair.from_pem(b"junk", serving.key_pem)


def test_parse_renew_before() -> None:
    assert parse_renew_before("30d") == timedelta(days=30)
    assert parse_renew_before("720h") == timedelta(days=30)
    assert parse_renew_before("90m") == timedelta(minutes=90)
    assert parse_renew_before("33%") == pytest.approx(0.33)
    for bad in ("", "30", "soon", "-1d", "0%", "150%", "x%"):
        with pytest.raises(CertError):
            parse_renew_before(bad)


def test_renewal_reasons(ca: KeyPair, serving: KeyPair) -> None:
    leaf = serving.cert
    ips = [ipaddress.ip_address("10.0.0.7")]
    assert (
        renewal_reason(leaf, NOW + timedelta(days=300), dns_names=DNS, ip_addresses=ips, ca=ca.cert)
        is None
    )
    # Within 30 days of the end, and after it.
    assert "renewal margin" in (renewal_reason(leaf, NOW + timedelta(days=340)) or "")
    assert "expired" in (renewal_reason(leaf, NOW + timedelta(days=366)) or "")
    # A fraction of the lifetime: a third of 365 days is about 122 days.
    assert renewal_reason(leaf, NOW + timedelta(days=200), renew_before=1 / 3) is None
    assert renewal_reason(leaf, NOW + timedelta(days=250), renew_before=1 / 3) is not None
    # Names compared as sets, in any order.
    assert renewal_reason(leaf, NOW, dns_names=list(reversed(DNS))) is None
    assert "DNS names changed" in (
        renewal_reason(leaf, NOW, dns_names=[*DNS, "x.example.com"]) or ""
    )
    assert "IP addresses changed" in (renewal_reason(leaf, NOW, ip_addresses=[]) or "")
    assert "not signed" in (renewal_reason(leaf, NOW, ca=generate_ca(NOW).cert) or "")
    # Clock far behind the certificate's start.
    assert "not valid before" in (renewal_reason(leaf, NOW - timedelta(days=1)) or "")


def test_needs_renewal_over_pem(ca: KeyPair, serving: KeyPair) -> None:
    assert not needs_renewal(serving.cert_pem, NOW, dns_names=DNS, ca_pem=ca.cert_pem)
    assert needs_renewal(serving.cert_pem, NOW, dns_names=DNS[:1])
    assert needs_renewal(serving.cert_pem, NOW + timedelta(days=350))
    assert not needs_renewal(serving.cert_pem, NOW + timedelta(days=10), ca_pem=ca.cert_pem)
    assert needs_renewal(b"not a certificate", NOW)


def test_ca_renewal_reason(ca: KeyPair, serving: KeyPair) -> None:
    assert ca_renewal_reason(ca.cert, NOW) is None
    # A CA must still cover a whole new serving certificate plus the renewal margin.
    assert ca_renewal_reason(ca.cert, NOW + timedelta(days=3650 - 396)) is None
    assert "too soon" in (ca_renewal_reason(ca.cert, NOW + timedelta(days=3650 - 394)) or "")
    assert "not a CA" in (ca_renewal_reason(serving.cert, NOW) or "")


def test_ensure_from_nothing_then_idempotent() -> None:
    first = ensure(Existing(), DNS, now=NOW)
    assert first.changed and first.ca_reason and first.serving_reason
    material = first.material
    assert material.bundle == (material.ca.cert,)
    stored = existing_from_pem(
        material.bundle_pem,
        material.ca.key_pem,
        material.serving.cert_pem,
        material.serving.key_pem,
    )
    again = ensure(stored, DNS, now=NOW + timedelta(days=100))
    assert not again.changed
    assert again.material.serving.cert == material.serving.cert
    assert again.material.ca.cert == material.ca.cert


def test_renewal_keeps_the_ca() -> None:
    material = ensure(Existing(), DNS, now=NOW).material
    stored = existing_from_pem(
        material.bundle_pem,
        material.ca.key_pem,
        material.serving.cert_pem,
        material.serving.key_pem,
    )
    later = NOW + timedelta(days=340)
    renewed = ensure(stored, DNS, now=later)
    assert renewed.ca_reason is None and renewed.serving_reason and not renewed.bundle_changed
    assert renewed.material.ca.cert == material.ca.cert
    assert renewed.material.serving.cert.serial_number != material.serving.cert.serial_number
    # The caBundle the API server already has still verifies the new certificate.
    _verify(material.ca.cert, renewed.material.serving.cert, DNS[1], later)
    # New names are a reason too, and keep the CA as well.
    renamed = ensure(stored, [*DNS, "webhook.example.com"], now=NOW + timedelta(days=1))
    assert renamed.serving_reason and "DNS names changed" in renamed.serving_reason
    assert renamed.material.ca.cert == material.ca.cert


def test_ca_rotation_keeps_the_old_ca_in_the_bundle_while_valid() -> None:
    ca = generate_ca(NOW)
    late = NOW + timedelta(days=3650 - 300)
    # The serving certificate was renewed yearly; the last one was issued a month ago.
    current = issue_serving_cert(ca, DNS, now=late - timedelta(days=30))
    stored = existing_from_pem(ca.cert_pem, ca.key_pem, current.cert_pem, current.key_pem)
    rotated = ensure(stored, DNS, now=late)
    assert rotated.ca_reason and rotated.serving_reason == "the CA was replaced"
    new = rotated.material
    assert new.ca.cert != ca.cert
    assert new.bundle == (new.ca.cert, ca.cert)
    # Both the old certificate (a pod not yet reloaded) and the new one verify against the bundle.
    bundle = load_certs(new.bundle_pem)
    for leaf in (current.cert, new.serving.cert):
        PolicyBuilder().store(Store(bundle)).time(late).build_server_verifier(
            x509.DNSName(DNS[0])
        ).verify(leaf, [])
    # Once the old CA has expired it leaves the bundle; the new CA is kept.
    stored2 = existing_from_pem(
        new.bundle_pem, new.ca.key_pem, new.serving.cert_pem, new.serving.key_pem
    )
    after = ensure(stored2, DNS, now=NOW + timedelta(days=3651))
    assert after.material.bundle == (new.ca.cert,) and after.bundle_changed
    assert after.ca_reason is None and after.material.ca.cert == new.ca.cert


def test_broken_storage_is_reported_and_replaced(ca: KeyPair, serving: KeyPair) -> None:
    existing = existing_from_pem(ca.cert_pem, None, serving.cert_pem, b"garbage")
    assert len(existing.problems) == 2 and existing.ca is None and existing.serving is None
    outcome = ensure(existing, DNS, now=NOW)
    assert outcome.notes == existing.problems
    assert outcome.material.ca.cert != ca.cert
    # The CA certificate whose key was lost stays trusted while valid (old pods still serve it).
    assert ca.cert in outcome.material.bundle


def test_ca_file_may_hold_retired_cas(ca: KeyPair, serving: KeyPair) -> None:
    retired = generate_ca(NOW - timedelta(days=1))
    bundle = certs_to_pem([retired.cert, ca.cert])
    existing = existing_from_pem(bundle, ca.key_pem, serving.cert_pem, serving.key_pem)
    assert existing.ca is not None and existing.ca.cert == ca.cert
    assert not existing.problems


def test_times_must_be_aware(ca: KeyPair) -> None:
    with pytest.raises(CertError):
        generate_ca(datetime(2026, 1, 1))

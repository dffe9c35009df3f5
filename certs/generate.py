"""The certificate authority and serving certificate of the webhook, as pure functions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from certs.names import IPAddress
from certs.pem import CertError, KeyPair, PrivateKey

DEFAULT_CA_VALIDITY = timedelta(days=3650)
DEFAULT_CERT_VALIDITY = timedelta(days=365)
# Certificates start a little in the past so a node whose clock lags accepts them at once.
CLOCK_SKEW = timedelta(minutes=5)
CA_COMMON_NAME = "image-sync-ca"
KEY_TYPES = ("ec", "rsa")


def _new_key(key_type: str) -> PrivateKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise CertError(f"unknown key type {key_type!r}; expected one of {', '.join(KEY_TYPES)}")


def as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise CertError("times must be timezone-aware")
    return moment.astimezone(UTC)


def generate_ca(
    now: datetime,
    validity: timedelta = DEFAULT_CA_VALIDITY,
    common_name: str = CA_COMMON_NAME,
    key_type: str = "ec",
) -> KeyPair:
    """A self-signed CA that may sign only end-entity certificates (path length 0).

    The subject carries the issue time so a retired and a current CA in one bundle can be
    told apart by people as well as by key identifiers.
    """
    now = as_utc(now)
    key = _new_key(key_type)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name}@{int(now.timestamp())}"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "image-sync"),
        ]
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert, key)


def issue_serving_cert(
    ca: KeyPair,
    dns_names: Sequence[str],
    ip_addresses: Sequence[IPAddress] = (),
    now: datetime | None = None,
    validity: timedelta = DEFAULT_CERT_VALIDITY,
    key_type: str = "ec",
) -> KeyPair:
    """A TLS server certificate for `dns_names` and `ip_addresses`, signed by `ca`.

    It never outlives the CA: a chain whose leaf is valid longer than its issuer fails
    verification at the CA's expiry anyway, and a clear end date is easier to monitor.
    """
    if not dns_names and not ip_addresses:
        raise CertError("a serving certificate needs at least one DNS name or IP address")
    now = as_utc(now or datetime.now(UTC))
    not_after = min(now + validity, ca.cert.not_valid_after_utc)
    if not_after <= now:
        raise CertError("the CA has expired; it cannot issue certificates")
    key = _new_key(key_type)
    public = key.public_key()
    common_name = dns_names[0] if dns_names else str(ip_addresses[0])
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    sans += [x509.IPAddress(address) for address in ip_addresses]
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]))
        .issuer_name(ca.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=isinstance(key, rsa.RSAPrivateKey),
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return KeyPair(cert, key)

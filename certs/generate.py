"""The certificate authority and serving certificate of the webhook, as pure functions.

Nothing here touches files or the API server: every function takes what it needs (the time
included) and returns new values, so the renewal rules can be tested at any instant. The
adapters (`certs.files`, `certs.cluster`) load existing material, call `ensure`, and store
what it returns.

Rules, and why:

- The CA lives ten years and is kept when the serving certificate is renewed, so the
  `caBundle` the API server trusts stays valid and renewing never needs a webhook
  configuration change.
- The serving certificate lives one year and is renewed when less than `renew_before`
  remains, when its names changed, or when it is not signed by the current CA.
- The CA itself is replaced only when it could no longer cover a fresh serving certificate;
  the retired CA stays in the bundle while it is valid, so clients that still see the old
  serving certificate (a webhook pod that has not reloaded yet) keep working.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_CA_VALIDITY = timedelta(days=3650)
DEFAULT_CERT_VALIDITY = timedelta(days=365)
DEFAULT_RENEW_BEFORE = timedelta(days=30)
# Certificates start a little in the past so a node whose clock lags accepts them at once.
CLOCK_SKEW = timedelta(minutes=5)
CA_COMMON_NAME = "image-sync-ca"
KEY_TYPES = ("ec", "rsa")


class CertError(ValueError):
    """Certificate material that cannot be used (unreadable PEM, mismatched key, bad input)."""


# --- PEM helpers -------------------------------------------------------------------------


def cert_to_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def certs_to_pem(certs: Iterable[x509.Certificate]) -> bytes:
    return b"".join(cert_to_pem(cert) for cert in certs)


def key_to_pem(key: PrivateKey) -> bytes:
    """PKCS#8 without a passphrase: what `ssl`, gunicorn and `kubernetes.io/tls` Secrets expect."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_cert(pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise CertError(f"not a PEM certificate: {exc}") from None


def load_certs(pem: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle (an empty bundle gives an empty list)."""
    if not pem.strip():
        return []
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise CertError(f"not a PEM certificate bundle: {exc}") from None


def load_key(pem: bytes) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CertError(f"not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise CertError(f"unsupported private key type {type(key).__name__}; use EC or RSA")
    return key


def _public_bytes(key: object) -> bytes:
    assert isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, checked to belong together."""

    cert: x509.Certificate
    key: PrivateKey

    def __post_init__(self) -> None:
        if _public_bytes(self.cert.public_key()) != _public_bytes(self.key.public_key()):
            raise CertError("the private key does not belong to the certificate")

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> KeyPair:
        return cls(load_cert(cert_pem), load_key(key_pem))

    @property
    def cert_pem(self) -> bytes:
        return cert_to_pem(self.cert)

    @property
    def key_pem(self) -> bytes:
        return key_to_pem(self.key)


# --- names -------------------------------------------------------------------------------


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names the API server uses to reach a webhook Service: `NAME.NS.svc` (and the FQDN)."""
    if not service or not namespace:
        raise CertError("a service name and a namespace are required")
    for what, value in (("service name", service), ("namespace", namespace)):
        if "." in value or not _valid_dns_name(value) or value != value.lower():
            raise CertError(f"{value!r} is not a valid {what} (a lowercase DNS label)")
    return [f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local"]


def split_sans(names: Iterable[str]) -> tuple[list[str], list[IPAddress]]:
    """Split extra subject names into DNS names and IP addresses, dropping duplicates in order."""
    dns: list[str] = []
    ips: list[IPAddress] = []
    for raw in names:
        name = raw.strip()
        if not name:
            raise CertError("an empty subject alternative name was given")
        try:
            address = ipaddress.ip_address(name.strip("[]"))
        except ValueError:
            lowered = name.lower().rstrip(".")
            if not _valid_dns_name(lowered):
                raise CertError(f"{raw!r} is neither an IP address nor a DNS name") from None
            if lowered not in dns:
                dns.append(lowered)
        else:
            if address not in ips:
                ips.append(address)
    return dns, ips


def _valid_dns_name(name: str) -> bool:
    if not name or len(name) > 253:
        return False
    labels = name.split(".")
    for index, label in enumerate(labels):
        if label == "*" and index == 0 and len(labels) > 1:
            continue
        if not 1 <= len(label) <= 63 or label[0] == "-" or label[-1] == "-":
            return False
        if not all(c.isascii() and (c.isalnum() or c == "-") for c in label):
            return False
    return True


# --- generation --------------------------------------------------------------------------


def _new_key(key_type: str) -> PrivateKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise CertError(f"unknown key type {key_type!r}; expected one of {', '.join(KEY_TYPES)}")


def _utc(moment: datetime) -> datetime:
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
    now = _utc(now)
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
    now = _utc(now or datetime.now(UTC))
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


# --- renewal decisions -------------------------------------------------------------------


RenewBefore = timedelta | float
"""How early to renew: a time before expiry, or a fraction (0 < f < 1) of the lifetime."""


def parse_renew_before(text: str) -> RenewBefore:
    """`30d`, `720h`, `90m` → a timedelta; `33%` → 0.33 of the certificate's lifetime."""
    value = text.strip()
    if value.endswith("%"):
        try:
            percent = float(value[:-1])
        except ValueError:
            raise CertError(f"expected a percentage like 33%, got {text!r}") from None
        if not 0 < percent < 100:
            raise CertError(f"the percentage must be between 0 and 100, got {text!r}")
        return percent / 100
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    number, unit = value[:-1], value[-1:].lower()
    if unit not in units:
        raise CertError(f"expected a duration like 30d, 720h or 33%, got {text!r}")
    try:
        amount = float(number)
    except ValueError:
        raise CertError(f"expected a duration like 30d, 720h or 33%, got {text!r}") from None
    if amount < 0:
        raise CertError(f"the renewal margin cannot be negative, got {text!r}")
    return timedelta(seconds=amount * units[unit])


def renewal_margin(cert: x509.Certificate, renew_before: RenewBefore) -> timedelta:
    """The time before `cert` expires from which it should be renewed."""
    if isinstance(renew_before, timedelta):
        return renew_before
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    return lifetime * renew_before


def _sans(cert: x509.Certificate) -> tuple[set[str], set[IPAddress]]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    ips = {
        value
        for value in ext.get_values_for_type(x509.IPAddress)
        if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address)
    }
    return set(ext.get_values_for_type(x509.DNSName)), ips


def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def renewal_reason(
    cert: x509.Certificate,
    now: datetime,
    renew_before: RenewBefore = DEFAULT_RENEW_BEFORE,
    dns_names: Iterable[str] | None = None,
    ip_addresses: Iterable[IPAddress] | None = None,
    ca: x509.Certificate | None = None,
) -> str | None:
    """Why the serving certificate `cert` must be replaced at `now`, or None to keep it.

    Names are compared as sets (order does not matter); they are checked only when given.
    """
    now = _utc(now)
    if now < cert.not_valid_before_utc - CLOCK_SKEW:
        return f"not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
    remaining = cert.not_valid_after_utc - now
    if remaining <= timedelta(0):
        return f"expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    margin = renewal_margin(cert, renew_before)
    if remaining < margin:
        return (
            f"expires on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC, within the renewal margin"
        )
    have_dns, have_ips = _sans(cert)
    if dns_names is not None and have_dns != set(dns_names):
        return f"DNS names changed: {sorted(have_dns)} -> {sorted(set(dns_names))}"
    if ip_addresses is not None and have_ips != set(ip_addresses):
        old, new = sorted(map(str, have_ips)), sorted(map(str, set(ip_addresses)))
        return f"IP addresses changed: {old} -> {new}"
    if ca is not None and not _issued_by(cert, ca):
        return "not signed by the current CA"
    return None


def needs_renewal(
    cert_pem: bytes,
    now: datetime,
    renew_before: RenewBefore = DEFAULT_RENEW_BEFORE,
    dns_names: Iterable[str] | None = None,
    ip_addresses: Iterable[IPAddress] | None = None,
    ca_pem: bytes | None = None,
) -> bool:
    """`renewal_reason` over PEM: True also when the PEM cannot be read."""
    try:
        cert = load_cert(cert_pem)
        ca = load_cert(ca_pem) if ca_pem is not None else None
    except CertError:
        return True
    return renewal_reason(cert, now, renew_before, dns_names, ip_addresses, ca) is not None


def ca_renewal_reason(
    ca: x509.Certificate,
    now: datetime,
    cert_validity: timedelta = DEFAULT_CERT_VALIDITY,
    renew_before: RenewBefore = DEFAULT_RENEW_BEFORE,
) -> str | None:
    """Why the CA must be replaced: it is not a usable CA, or it cannot cover a new certificate.

    A CA is replaced when less than one serving-certificate lifetime plus the renewal margin
    remains: from then on a new certificate would be cut short by the CA's end.
    """
    now = _utc(now)
    try:
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
        usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return "not a CA certificate (basicConstraints or keyUsage missing)"
    if not constraints.ca or not usage.key_cert_sign:
        return "not a CA certificate (CA:false or no keyCertSign)"
    if now < ca.not_valid_before_utc - CLOCK_SKEW:
        return "the CA is not valid yet"
    remaining = ca.not_valid_after_utc - now
    needed = cert_validity + (
        renew_before if isinstance(renew_before, timedelta) else cert_validity * renew_before
    )
    if remaining < needed:
        return f"the CA expires on {ca.not_valid_after_utc:%Y-%m-%d} UTC, too soon to sign a new certificate"
    return None


# --- the whole decision ------------------------------------------------------------------


@dataclass(frozen=True)
class Existing:
    """What an adapter found in storage, already parsed; `problems` says what was unusable."""

    ca: KeyPair | None = None
    serving: KeyPair | None = None
    bundle: tuple[x509.Certificate, ...] = ()
    problems: tuple[str, ...] = ()


def existing_from_pem(
    ca_cert: bytes | None = None,
    ca_key: bytes | None = None,
    tls_cert: bytes | None = None,
    tls_key: bytes | None = None,
    ca_bundle: bytes | None = None,
) -> Existing:
    """Parse stored PEM; broken or half-present material is noted and treated as absent.

    A CA certificate without its key cannot sign a renewal, so it is kept only in the bundle.
    """
    problems: list[str] = []
    ca = serving = None
    bundle: list[x509.Certificate] = []
    if ca_cert and ca_key:
        try:
            ca = _pair_in_bundle(load_certs(ca_cert), load_key(ca_key))
        except CertError as exc:
            problems.append(f"stored CA unusable: {exc}")
    elif ca_cert or ca_key:
        problems.append("stored CA incomplete (certificate or key missing)")
    if tls_cert and tls_key:
        try:
            serving = KeyPair.from_pem(tls_cert, tls_key)
        except CertError as exc:
            problems.append(f"stored serving certificate unusable: {exc}")
    elif tls_cert or tls_key:
        problems.append("stored serving certificate incomplete (certificate or key missing)")
    for pem in (ca_bundle, ca_cert):
        if pem:
            try:
                bundle.extend(load_certs(pem))
            except CertError as exc:
                problems.append(f"stored CA bundle unusable: {exc}")
    return Existing(ca=ca, serving=serving, bundle=tuple(bundle), problems=tuple(problems))


def _pair_in_bundle(certs: Sequence[x509.Certificate], key: PrivateKey) -> KeyPair:
    """The certificate of a bundle that belongs to `key` (a CA file may hold retired CAs too)."""
    for cert in certs:
        try:
            return KeyPair(cert, key)
        except CertError:
            continue
    raise CertError("no certificate in the CA file belongs to the CA key")


@dataclass(frozen=True)
class Material:
    """Everything a deployment needs: the CA, the serving pair, and the CA bundle to trust."""

    ca: KeyPair
    serving: KeyPair
    bundle: tuple[x509.Certificate, ...]

    @property
    def bundle_pem(self) -> bytes:
        return certs_to_pem(self.bundle)


@dataclass(frozen=True)
class Outcome:
    """The material to store and why it differs from what was there (None: kept)."""

    material: Material
    ca_reason: str | None = None
    serving_reason: str | None = None
    bundle_changed: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def changed(self) -> bool:
        return bool(self.ca_reason or self.serving_reason or self.bundle_changed)


def _bundle(
    current: x509.Certificate, previous: Iterable[x509.Certificate], now: datetime
) -> tuple[x509.Certificate, ...]:
    """Current CA first, then earlier CAs that are still valid, each once."""
    out = [current]
    seen = {current.fingerprint(hashes.SHA256())}
    for cert in previous:
        fingerprint = cert.fingerprint(hashes.SHA256())
        if fingerprint in seen or cert.not_valid_after_utc <= now:
            continue
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if is_ca:
            out.append(cert)
            seen.add(fingerprint)
    return tuple(out)


def ensure(
    existing: Existing,
    dns_names: Sequence[str],
    ip_addresses: Sequence[IPAddress] = (),
    now: datetime | None = None,
    renew_before: RenewBefore = DEFAULT_RENEW_BEFORE,
    ca_validity: timedelta = DEFAULT_CA_VALIDITY,
    cert_validity: timedelta = DEFAULT_CERT_VALIDITY,
    key_type: str = "ec",
) -> Outcome:
    """Keep what is still good, replace what is not: the one place the renewal rules live.

    Idempotent: called again with its own output at the same time, it changes nothing.
    """
    now = _utc(now or datetime.now(UTC))
    ca = existing.ca
    ca_reason = (
        "no usable CA stored"
        if ca is None
        else ca_renewal_reason(ca.cert, now, cert_validity, renew_before)
    )
    if ca is None or ca_reason:
        ca = generate_ca(now, ca_validity, key_type=key_type)
    serving = existing.serving
    serving_reason: str | None
    if ca_reason:
        serving_reason = "the CA was replaced"
    elif serving is None:
        serving_reason = "no usable serving certificate stored"
    else:
        serving_reason = renewal_reason(
            serving.cert, now, renew_before, dns_names, ip_addresses, ca.cert
        )
    if serving is None or serving_reason:
        serving = issue_serving_cert(ca, dns_names, ip_addresses, now, cert_validity, key_type)
    bundle = _bundle(ca.cert, existing.bundle, now)
    bundle_changed = certs_to_pem(bundle) != certs_to_pem(_dedupe(existing.bundle))
    return Outcome(
        material=Material(ca=ca, serving=serving, bundle=bundle),
        ca_reason=ca_reason,
        serving_reason=serving_reason,
        bundle_changed=bundle_changed,
        notes=existing.problems,
    )


def _dedupe(certs: Iterable[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    out: list[x509.Certificate] = []
    seen: set[bytes] = set()
    for cert in certs:
        fingerprint = cert.fingerprint(hashes.SHA256())
        if fingerprint not in seen:
            seen.add(fingerprint)
            out.append(cert)
    return tuple(out)

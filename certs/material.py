"""Keep what is still good, replace what is not: the CA, serving pair and CA bundle to store.

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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from certs.generate import (
    DEFAULT_CA_VALIDITY,
    DEFAULT_CERT_VALIDITY,
    as_utc,
    generate_ca,
    issue_serving_cert,
)
from certs.names import IPAddress
from certs.pem import CertError, KeyPair, PrivateKey, certs_to_pem, load_certs, load_key
from certs.renewal import DEFAULT_RENEW_BEFORE, RenewBefore, ca_renewal_reason, renewal_reason


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
    now = as_utc(now or datetime.now(UTC))
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

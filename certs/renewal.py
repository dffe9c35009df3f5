"""When a serving certificate or a CA must be replaced, and why, at a given instant."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from certs.generate import CLOCK_SKEW, DEFAULT_CERT_VALIDITY, as_utc
from certs.names import IPAddress
from certs.pem import CertError, load_cert

DEFAULT_RENEW_BEFORE = timedelta(days=30)


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
    now = as_utc(now)
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
    now = as_utc(now)
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

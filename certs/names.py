"""The subject names of the serving certificate: the Service's DNS names and extra names or IPs."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from certs.pem import CertError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


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

"""Registry credentials from `kubernetes.io/dockerconfigjson` Secrets, as the kubelet reads them.

A pull secret maps registry keys (`harbor.example.internal`, `https://nvcr.io`,
`https://index.docker.io/v1/`) to a user name and password (`auth` is base64 of
`user:password`). The first secret (in `imagePullSecrets` order) that names a host wins.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

DOCKERCONFIGJSON = ".dockerconfigjson"
DOCKERCFG = ".dockercfg"
# Docker Hub's names: a secret written for one serves the others.
DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")


class Credentials(NamedTuple):
    username: str
    password: str


class CredentialsError(ValueError):
    """A pull secret that cannot be read; the message names the secret."""


def registry_key(key: str) -> str:
    """`https://nvcr.io/v1/` → `nvcr.io`; Docker Hub's aliases → `docker.io`."""
    host = key.strip()
    for scheme in ("https://", "http://"):
        if host.startswith(scheme):
            host = host[len(scheme) :]
    host = host.split("/", 1)[0].lower()
    return "docker.io" if host in DOCKER_HUB else host


def _decode(value: Any) -> str:
    try:
        return base64.b64decode(str(value), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise CredentialsError("not base64") from None


def _entry(entry: Mapping[str, Any]) -> Credentials | None:
    if entry.get("auth"):
        user, sep, password = _decode(entry["auth"]).partition(":")
        if not sep:
            raise CredentialsError("auth is not user:password")
        return Credentials(user, password)
    if entry.get("username") is not None:
        return Credentials(str(entry["username"]), str(entry.get("password") or ""))
    return None


def from_secret(secret: Mapping[str, Any]) -> dict[str, Credentials]:
    """Host → credentials of one Secret (`.dockerconfigjson`, or the older `.dockercfg`)."""
    name = (secret.get("metadata") or {}).get("name", "?")
    data = secret.get("data") or {}
    try:
        if DOCKERCONFIGJSON in data:
            auths = json.loads(_decode(data[DOCKERCONFIGJSON])).get("auths") or {}
        elif DOCKERCFG in data:
            auths = json.loads(_decode(data[DOCKERCFG]))
        else:
            raise CredentialsError(f"has neither {DOCKERCONFIGJSON} nor {DOCKERCFG}")
        if not isinstance(auths, Mapping):
            raise CredentialsError("auths is not a mapping")
        out: dict[str, Credentials] = {}
        for key, entry in auths.items():
            if isinstance(entry, Mapping) and (found := _entry(entry)) is not None:
                out.setdefault(registry_key(str(key)), found)
        return out
    except (CredentialsError, ValueError) as exc:
        raise CredentialsError(f"pull secret {name}: {exc}") from None


def merge(secrets: Iterable[Mapping[str, Credentials]]) -> dict[str, Credentials]:
    """The first secret that names a host wins."""
    out: dict[str, Credentials] = {}
    for secret in secrets:
        for host, credentials in secret.items():
            out.setdefault(host, credentials)
    return out


def dockerconfigjson(auths: Mapping[str, Credentials]) -> str:
    """The `.dockerconfigjson` text for `auths` (tests and docs build pull secrets with it)."""
    return json.dumps(
        {
            "auths": {
                host: {"auth": base64.b64encode(f"{c.username}:{c.password}".encode()).decode()}
                for host, c in auths.items()
            }
        }
    )

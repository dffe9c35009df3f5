"""The Kubernetes objects that carry the certificates, built and read as plain dicts.

Two Secrets, on purpose: the `kubernetes.io/tls` Secret the webhook mounts (`tls.crt`,
`tls.key`, `ca.crt`) and a separate CA Secret (`<name>-ca`) holding the CA key, which only
the certificate job may read, so a compromised webhook pod cannot mint certificates.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from certs.material import Existing, Material, existing_from_pem
from certs.pem import KeyPair
from imagesync.names import LABEL_COMPONENT, LABEL_MANAGED_BY, MANAGED_BY

SECRET_TYPE_TLS = "kubernetes.io/tls"
COMPONENT = "webhook-certs"


def ca_secret_name(secret_name: str) -> str:
    return f"{secret_name}-ca"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: Any) -> bytes | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        return None


def _secret(name: str, namespace: str, data: Mapping[str, bytes]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_COMPONENT: COMPONENT},
        },
        "type": SECRET_TYPE_TLS,
        "data": {key: _b64(value) for key, value in sorted(data.items())},
    }


def tls_secret(name: str, namespace: str, material: Material) -> dict[str, Any]:
    """The Secret the webhook mounts; `ca.crt` is the bundle the API server must trust."""
    return _secret(
        name,
        namespace,
        {
            "tls.crt": material.serving.cert_pem,
            "tls.key": material.serving.key_pem,
            "ca.crt": material.bundle_pem,
        },
    )


def ca_secret(name: str, namespace: str, ca: KeyPair) -> dict[str, Any]:
    """The CA as a `kubernetes.io/tls` Secret (the shape cert-manager uses for a CA Issuer too)."""
    return _secret(ca_secret_name(name), namespace, {"tls.crt": ca.cert_pem, "tls.key": ca.key_pem})


def secret_bytes(secret: Mapping[str, Any] | None, key: str) -> bytes | None:
    if not secret:
        return None
    return _unb64((secret.get("data") or {}).get(key))


def existing_from_secrets(tls: Mapping[str, Any] | None, ca: Mapping[str, Any] | None) -> Existing:
    """Parse what the cluster holds; a missing Secret is simply absent material."""
    return existing_from_pem(
        ca_cert=secret_bytes(ca, "tls.crt"),
        ca_key=secret_bytes(ca, "tls.key"),
        tls_cert=secret_bytes(tls, "tls.crt"),
        tls_key=secret_bytes(tls, "tls.key"),
        ca_bundle=secret_bytes(tls, "ca.crt"),
    )


def ca_bundle_patch(webhook_configuration: Mapping[str, Any], bundle_pem: bytes) -> list[Any]:
    """A JSON patch setting `caBundle` on every webhook that lacks it, or [] if all have it.

    Each change is guarded by a `test` of the webhook's name, so a configuration edited
    between our read and our patch makes the patch fail instead of landing on the wrong entry.
    """
    wanted = _b64(bundle_pem)
    ops: list[Any] = []
    webhooks: Sequence[Mapping[str, Any]] = webhook_configuration.get("webhooks") or []
    for index, webhook in enumerate(webhooks):
        client_config = webhook.get("clientConfig") or {}
        if client_config.get("caBundle") == wanted:
            continue
        ops.append({"op": "test", "path": f"/webhooks/{index}/name", "value": webhook["name"]})
        if "clientConfig" not in webhook:
            ops.append({"op": "add", "path": f"/webhooks/{index}/clientConfig", "value": {}})
        ops.append(
            {"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": wanted}
        )
    return ops


def same_data(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """True when a stored Secret already holds exactly the desired type and data."""
    if current is None:
        return False
    return bool(current.get("type") == desired["type"]) and bool(
        dict(current.get("data") or {}) == desired["data"]
    )


def to_yaml(objects: Sequence[Mapping[str, Any]]) -> str:
    """A multi-document YAML stream, keys in a stable order."""
    return yaml.safe_dump_all([dict(o) for o in objects], sort_keys=False, explicit_start=True)

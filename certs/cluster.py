"""Certificates kept in the cluster: the Secrets and the webhook configuration's `caBundle`.

Read, decide with the pure core, write only what differs: running it twice changes nothing,
and two runs racing each other meet on resourceVersion conflicts and simply start over.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from certs.material import Outcome, ensure
from certs.names import IPAddress
from certs.renewal import DEFAULT_RENEW_BEFORE, RenewBefore
from certs.secret import (
    ca_bundle_patch,
    ca_secret,
    ca_secret_name,
    existing_from_secrets,
    same_data,
    tls_secret,
)
from imagesync.kubeclient import KubeError, from_api_exception

log = logging.getLogger(__name__)
ATTEMPTS = 4


@dataclass(frozen=True)
class Applied:
    """What a run did, for the log and for tests."""

    outcome: Outcome
    secrets_written: tuple[str, ...]
    webhooks_patched: int


def _read(call: Callable[..., Any], what: str, *args: Any) -> dict[str, Any] | None:
    """GET an object as a plain dict (None on 404), independent of the client's model classes."""
    try:
        response = call(*args, _preload_content=False)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise from_api_exception(exc, what) from None
    body: dict[str, Any] = json.loads(response.data)
    return body


def _write_secret(
    core: client.CoreV1Api, current: dict[str, Any] | None, desired: dict[str, Any]
) -> bool:
    """Create or replace a Secret when its data differs; False when it was already right."""
    if same_data(current, desired):
        return False
    name, namespace = desired["metadata"]["name"], desired["metadata"]["namespace"]
    body = dict(desired)
    if current is not None:
        # Keep the stored labels and annotations; resourceVersion makes the write conditional.
        stored = current.get("metadata") or {}
        body["metadata"] = {
            **desired["metadata"],
            "labels": {**(stored.get("labels") or {}), **desired["metadata"]["labels"]},
            "annotations": stored.get("annotations") or {},
            "resourceVersion": stored.get("resourceVersion"),
        }
    secret = client.V1Secret.from_dict(body)
    assert secret is not None
    try:
        if current is None:
            core.create_namespaced_secret(namespace, secret, _preload_content=False)
        else:
            core.replace_namespaced_secret(name, namespace, secret, _preload_content=False)
    except ApiException as exc:
        raise from_api_exception(exc, f"writing Secret {namespace}/{name}") from None
    return True


@dataclass(frozen=True)
class Target:
    """Where the certificates go and what they must say."""

    namespace: str
    secret_name: str
    webhook_configuration: str
    dns_names: tuple[str, ...]
    ip_addresses: tuple[IPAddress, ...] = ()
    renew_before: RenewBefore = DEFAULT_RENEW_BEFORE
    key_type: str = "ec"
    # ValidatingWebhookConfigurations served by the same webhook (the pod guard); one that
    # does not exist (an install that uses the admission policy instead) is left out.
    validating_configurations: tuple[str, ...] = ()


def apply(api_client: client.ApiClient, target: Target, now: datetime) -> Applied:
    """Make the Secrets and the `caBundle` right, reusing a stored CA that is still good.

    Retries from the start on a conflict (another run wrote in between): its result is then
    read back and usually kept as it is.
    """
    last_error: KubeError | None = None
    for _ in range(ATTEMPTS):
        try:
            return _apply_once(api_client, target, now)
        except urllib3.exceptions.HTTPError as exc:
            raise KubeError(f"cannot reach the API server: {exc}") from None
        except KubeError as exc:
            if exc.status not in (409, 422):
                raise
            log.info("conflict, starting over: %s", exc)
            last_error = exc
    assert last_error is not None
    raise last_error


def _apply_once(api_client: client.ApiClient, target: Target, now: datetime) -> Applied:
    namespace, secret_name = target.namespace, target.secret_name
    webhook_configuration = target.webhook_configuration
    core = client.CoreV1Api(api_client)
    admission = client.AdmissionregistrationV1Api(api_client)
    ca_name = ca_secret_name(secret_name)
    current_tls = _read(
        core.read_namespaced_secret,
        f"reading Secret {namespace}/{secret_name}",
        secret_name,
        namespace,
    )
    current_ca = _read(
        core.read_namespaced_secret, f"reading Secret {namespace}/{ca_name}", ca_name, namespace
    )
    config = _read(
        admission.read_mutating_webhook_configuration,
        f"reading MutatingWebhookConfiguration {webhook_configuration}",
        webhook_configuration,
    )
    if config is None:
        raise KubeError(
            f"MutatingWebhookConfiguration {webhook_configuration!r} not found; apply the "
            "manifests first (or pass --webhook-config with the right name)",
            status=404,
        )
    existing = existing_from_secrets(current_tls, current_ca)
    outcome = ensure(
        existing,
        target.dns_names,
        target.ip_addresses,
        now,
        renew_before=target.renew_before,
        key_type=target.key_type,
    )
    material = outcome.material
    written = []
    # The CA first: if the run stops after it, the next run still finds the CA it needs.
    if _write_secret(core, current_ca, ca_secret(secret_name, namespace, material.ca)):
        written.append(ca_name)
    if _write_secret(core, current_tls, tls_secret(secret_name, namespace, material)):
        written.append(secret_name)
    patched = 0
    ops = ca_bundle_patch(config, material.bundle_pem)
    if ops:
        try:
            admission.patch_mutating_webhook_configuration(
                webhook_configuration,
                ops,
                _content_type="application/json-patch+json",
                _preload_content=False,
            )
        except ApiException as exc:
            raise from_api_exception(
                exc,
                f"patching caBundle into MutatingWebhookConfiguration {webhook_configuration}",
            ) from None
        patched = sum(1 for op in ops if op["op"] == "test")
    for name in target.validating_configurations:
        patched += _patch_validating(admission, name, material.bundle_pem)
    return Applied(outcome=outcome, secrets_written=tuple(written), webhooks_patched=patched)


def _patch_validating(
    admission: client.AdmissionregistrationV1Api, name: str, bundle: bytes
) -> int:
    """Set caBundle on the webhooks of ValidatingWebhookConfiguration `name` that lack it;
    how many it changed (0 when it is absent)."""
    what = f"ValidatingWebhookConfiguration {name}"
    config = _read(admission.read_validating_webhook_configuration, f"reading {what}", name)
    if config is None:
        log.info("%s not found; its caBundle is left alone", what)
        return 0
    ops = ca_bundle_patch(config, bundle)
    if not ops:
        return 0
    try:
        admission.patch_validating_webhook_configuration(
            name, ops, _content_type="application/json-patch+json", _preload_content=False
        )
    except ApiException as exc:
        raise from_api_exception(exc, f"patching caBundle into {what}") from None
    return sum(1 for op in ops if op["op"] == "test")

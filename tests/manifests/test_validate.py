"""Every rendered object is valid Kubernetes: strict OpenAPI validation of base and overlays."""

from __future__ import annotations

from collections import Counter
from typing import Any

import kubernetes_validate
import pytest

from tests.manifests.render import KUSTOMIZATIONS, find, render

# An older supported Kubernetes, the one our kubectl speaks, and a recent one.
KUBERNETES_VERSIONS = ("1.31.0", "1.32.0", "1.35.0")
# Kinds from other projects' CRDs, which kubernetes-validate does not know.
CERT_MANAGER_KINDS = {("cert-manager.io/v1", "Issuer"), ("cert-manager.io/v1", "Certificate")}
PROMETHEUS_OPERATOR_KINDS = {
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}
FOREIGN_KINDS = CERT_MANAGER_KINDS | PROMETHEUS_OPERATOR_KINDS
# Checked elsewhere: the rules by promtool (tests/monitoring), the ServiceMonitors against the
# Services they scrape (tests/monitoring/test_overlay.py).
EXPECTED_FOREIGN = {
    "overlays/cert-manager": CERT_MANAGER_KINDS,
    "overlays/monitoring": PROMETHEUS_OPERATOR_KINDS,
}
CLUSTER_SCOPED = {
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "PriorityClass",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("target", KUSTOMIZATIONS)
def test_every_object_validates_strictly(target: str, version: str) -> None:
    skipped = set()
    errors = []
    for obj in render(target):
        key = (obj["apiVersion"], obj["kind"])
        if key in FOREIGN_KINDS:
            skipped.add(key)
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {exc.message}")
    assert errors == []
    assert skipped == EXPECTED_FOREIGN.get(target, set())


def test_the_validator_catches_mistakes() -> None:
    """Guard against a validator that passes everything: typos and wrong types fail."""
    deployment = find(render("base"), "Deployment", "image-sync-webhook")
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    container["imagePullPolicy"] = "IfNotPresent"
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)
    webhook = find(render("base"), "MutatingWebhookConfiguration")
    webhook["webhooks"][0]["timeoutSeconds"] = "3"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(webhook, KUBERNETES_VERSIONS[0], strict=True)


@pytest.mark.parametrize("target", KUSTOMIZATIONS)
def test_names_are_unique_and_namespaced_objects_live_in_image_sync(target: str) -> None:
    objects = render(target)
    keys = Counter(
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects
    )
    assert [k for k, n in keys.items() if n > 1] == []
    for obj in objects:
        namespace = obj["metadata"].get("namespace")
        if obj["kind"] in CLUSTER_SCOPED:
            assert namespace is None, f"{obj['kind']} {obj['metadata']['name']} is cluster-scoped"
        else:
            # image-sync's own namespace, or the pod namespace (tests/manifests/test_security.py)
            assert namespace in ("image-sync", "image-sync-cache"), (
                f"{obj['kind']} {obj['metadata']['name']}"
            )
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "image-sync"


def test_base_holds_what_an_admin_needs() -> None:
    kinds = Counter(o["kind"] for o in render("base"))
    assert kinds == {
        "Namespace": 2,
        "CustomResourceDefinition": 1,
        "PriorityClass": 1,
        "ConfigMap": 1,
        "ServiceAccount": 4,
        "ClusterRole": 3,
        "ClusterRoleBinding": 3,
        "Role": 3,
        "RoleBinding": 3,
        "Deployment": 2,
        "Service": 2,
        "PodDisruptionBudget": 1,
        "MutatingWebhookConfiguration": 1,
        "ValidatingWebhookConfiguration": 1,
        "Job": 1,
        "CronJob": 1,
    }

"""Facts seen on real clusters, pinned on the real API server: what a hardened cluster does to
the webhook's rewrite, and how JSON patch treats a missing key (the simulator agrees)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from imagesync import names
from imagesync.kubeclient import load_api_client
from tests.apiserver_facts import JSON_PATCH_CASES, JsonPatchCase, check_json_patch
from tests.realk8s.components import get_json, kubectl, wait_for
from tests.realk8s.conftest import Installed, manifest_text
from tests.webhook.conftest import WebhookProcess

ALWAYS_PULL_IMAGES = "--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook,AlwaysPullImages"


@pytest.mark.parametrize("case", JSON_PATCH_CASES, ids=lambda c: c.why)
def test_json_patch_on_the_real_server(installed: Installed, case: JsonPatchCase) -> None:
    api = load_api_client(str(installed.control_plane.kubeconfig))
    try:
        check_json_patch(api, "default", case)
    finally:
        api.close()


def patches_counted(webhook: WebhookProcess) -> float:
    for family in text_string_to_metric_families(webhook.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "image_sync_webhook_patches_total":
                return float(sample.value)
    return 0.0


@pytest.fixture(scope="module")
def always_pull_images(installed: Installed) -> Iterator[None]:
    """kube-apiserver restarted with the AlwaysPullImages admission plugin on, then off again."""
    plane = installed.control_plane
    plane.restart_apiserver(ALWAYS_PULL_IMAGES)
    try:
        yield
    finally:
        plane.restart_apiserver("")


def managed_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "containers": [
                {
                    "name": "main",
                    "image": "harbor.example.internal/library/app:1.0",
                    "imagePullPolicy": "Always",
                }
            ],
            "nodeSelector": {"no-such-node": "true"},  # stays Pending: only admission matters
        },
    }


@contextmanager
def reinvocation(installed: Installed, policy: str) -> Iterator[None]:
    """The webhook registered with `reinvocationPolicy: policy`, the shipped one again after."""
    plane = installed.control_plane
    shipped = get_json(plane, "mutatingwebhookconfiguration", names.WEBHOOK_CONFIGURATION)
    original = shipped["webhooks"][0]["reinvocationPolicy"]

    def set_policy(value: str) -> None:
        patch = [{"op": "replace", "path": "/webhooks/0/reinvocationPolicy", "value": value}]
        kubectl(plane, "patch", "mutatingwebhookconfiguration", names.WEBHOOK_CONFIGURATION,
                "--type=json", "-p", json.dumps(patch))  # fmt: skip

    set_policy(policy)
    try:
        yield
    finally:
        set_policy(original)


def test_always_pull_images_undoes_the_rewrite_without_refusing_the_pod(
    installed: Installed, webhook: WebhookProcess, always_pull_images: None
) -> None:
    """The shipped registration: the pod is admitted and stored with Always, although the
    webhook patched it (and counted the patch)."""
    plane = installed.control_plane
    before = patches_counted(webhook)
    installed.apply(managed_pod("always-pull"))
    stored = get_json(plane, "pod", "always-pull", "-n", "default")
    assert [c["imagePullPolicy"] for c in stored["spec"]["containers"]] == ["Always"]
    wait_for(lambda: patches_counted(webhook) > before, what="the webhook's patch counted")
    kubectl(plane, "delete", "pod", "always-pull", "-n", "default")


def test_always_pull_images_refuses_the_pod_if_the_webhook_is_reinvoked(
    installed: Installed, webhook: WebhookProcess, always_pull_images: None
) -> None:
    """Why the shipped registration says `reinvocationPolicy: Never`: with IfNeeded the API
    server re-runs the plugin after the patch, calls the webhook again, and the plugin's
    validation then refuses the pod."""
    with reinvocation(installed, "IfNeeded"):
        result = kubectl(
            installed.control_plane,
            "apply",
            "-f",
            "-",
            stdin=manifest_text([managed_pod("always-pull-reinvoked")]),
            check=False,
        )
    assert result.returncode != 0
    assert 'imagePullPolicy: Unsupported value: "IfNotPresent"' in result.stderr, result.stderr

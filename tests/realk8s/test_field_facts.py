"""Facts seen on real clusters, pinned on the real API server: what a hardened cluster does to
the webhook's rewrite (and that image-sync says so and keeps prefetching), and how JSON patch
treats a missing key (the simulator agrees)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from imagesync import names
from imagesync.kubeclient import load_api_client
from tests.apiserver_facts import JSON_PATCH_CASES, JsonPatchCase, check_json_patch
from tests.realk8s.components import (
    PREFETCHER_ACCOUNT,
    Process,
    get_json,
    kubectl,
    log_lines,
    start_prefetcher,
    token_kubeconfig,
)
from tests.realk8s.conftest import CPU_NODES, GPU_NODES, Installed, manifest_text
from tests.realk8s.test_end_to_end import declared
from tests.waiting import wait_for
from tests.webhook.conftest import WebhookProcess

ALWAYS_PULL_IMAGES = "--enable-admission-plugins=MutatingAdmissionWebhook,ValidatingAdmissionWebhook,AlwaysPullImages"


@pytest.mark.parametrize("case", JSON_PATCH_CASES, ids=lambda c: c.why)
def test_json_patch_on_the_real_server(installed: Installed, case: JsonPatchCase) -> None:
    api = load_api_client(str(installed.control_plane.kubeconfig))
    try:
        check_json_patch(api, "default", case)
    finally:
        api.close()


def metric(text: str, name: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return 0.0


def patches_counted(webhook: WebhookProcess) -> float:
    return metric(webhook.get("/metrics").text, "image_sync_webhook_patches_total")


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
    """A pod whose only container is rewritten, that never gets a node: only admission matters."""
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
            "nodeSelector": {"no-such-node": "true"},
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
    assert stored["metadata"]["annotations"][names.ANNOTATION_REWRITTEN] == "main"
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


# Declared here and by no other test: its pulls are this test's prefetching.
DECLARED = "docker.io/library/python:3.12-slim"
UNDONE_NOTICE = "pull policy rewrite undone"


def test_always_pull_images_is_said_once_and_prefetching_goes_on(
    installed: Installed,
    kubelets: Process,
    webhook: WebhookProcess,
    always_pull_images: None,
    tmp_path: Path,
) -> None:
    """The prefetcher sees workload pods start whose rewritten containers say Always: it says
    so once (report, metric, one log line) and still puts images on every node."""
    plane = installed.control_plane
    kubeconfig = token_kubeconfig(plane, PREFETCHER_ACCOUNT, tmp_path / "prefetcher.kubeconfig")
    probe = declared(DECLARED) | {"metadata": {"name": "always-pull-probe"}}
    installed.apply(probe)
    prefetcher = start_prefetcher(kubeconfig, installed.config_file, tmp_path, "prefetcher-always")
    workload = [managed_pod(f"undone-{i}") for i in range(2)]
    for pod in workload:
        del pod["spec"]["nodeSelector"]
    try:
        installed.apply(*workload)

        def notice() -> dict[str, Any] | None:
            report = prefetcher.report()
            found: dict[str, Any] | None = report and report["runtime"]["pullPolicyRewriteUndone"]
            return found

        undone = wait_for(notice, what="the undone rewrite in the report")
        assert undone["pod"] in {"default/undone-0", "default/undone-1"}, undone
        assert undone["policies"] == {"main": "Always"}, undone
        metrics = prefetcher.get("/metrics")
        assert metrics is not None
        assert metric(metrics.text, "image_sync_prefetcher_pull_policy_rewrite_undone") == 1

        def cells() -> dict[str, str]:
            report = prefetcher.report() or {"images": []}
            for image in report["images"]:
                if image["image"] == DECLARED:
                    return {node: cell["state"] for node, cell in image["nodes"].items()}
            return {}

        expected = dict.fromkeys((*CPU_NODES, *GPU_NODES), "present")
        wait_for(lambda: cells() == expected, timeout=120, interval=0.5,
                 what="the declared image on every node")  # fmt: skip
        wait_for(
            lambda: all(
                get_json(plane, "pod", p["metadata"]["name"], "-n", "default")["status"].get(
                    "phase"
                )
                == "Running"
                for p in workload
            ),
            what="both workload pods Running",
        )
        assert len(log_lines(prefetcher.process.log(), (UNDONE_NOTICE,))) == 1
    finally:
        prefetcher.process.stop()
        kubectl(plane, "delete", names.CACHED_IMAGE_CRD, "always-pull-probe", "--ignore-not-found")
        for pod in workload:
            kubectl(plane, "delete", "pod", pod["metadata"]["name"], "-n", "default",
                    "--ignore-not-found", "--wait=false")  # fmt: skip

"""The shipped RBAC is needed verb by verb: without one, the real API server answers 403 and
the component says so in its log."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from imagesync import names
from tests.realk8s.components import (
    FORBIDDEN,
    PREFETCHER_ACCOUNT,
    Process,
    kubectl,
    log_lines,
    start_prefetcher,
    token_kubeconfig,
)
from tests.realk8s.conftest import Installed
from tests.realk8s.test_end_to_end import cached_images, declared
from tests.waiting import wait_for
from tests.webhook.conftest import WebhookProcess


@contextmanager
def without_verb(
    installed: Installed,
    kind: str,
    name: str,
    resource: str,
    verb: str,
    namespace: str | None = None,
) -> Iterator[None]:
    """The shipped Role/ClusterRole `name` with `verb` taken away from `resource`, restored after."""
    original = installed.rendered(kind, name, namespace)
    reduced = installed.rendered(kind, name, namespace)
    rules = [r for r in reduced["rules"] if resource in r["resources"]]
    assert rules and all(verb in r["verbs"] for r in rules), (
        f"{kind} {name} has no {verb} {resource}"
    )
    for rule in rules:
        rule["verbs"].remove(verb)
    installed.apply(reduced)
    try:
        yield
    finally:
        installed.apply(original)


def pod(name: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "main", "image": image}], "restartPolicy": "Never"},
    }


def test_the_webhook_needs_create_on_cached_images(
    installed: Installed, kubelets: Process, webhook: WebhookProcess
) -> None:
    image = "harbor.example.internal/library/api:2.4.0"
    start = len(webhook.log())
    with without_verb(
        installed, "ClusterRole", "image-sync-webhook", names.CACHED_IMAGE_PLURAL, "create"
    ):
        installed.apply(pod("rbac-probe", image))
        lines = wait_for(
            lambda: log_lines(webhook.log(), FORBIDDEN, start), what="a 403 in the webhook's log"
        )
        assert image in "\n".join(lines)
        assert image not in cached_images(installed)
    # With the verb back, the next flush learns the image it kept.
    wait_for(lambda: image in cached_images(installed), what="the image learned after the fix")
    kubectl(installed.control_plane, "delete", "pod", "rbac-probe", "--wait=false")


def test_the_prefetcher_needs_create_on_pods(
    installed: Installed, kubelets: Process, tmp_path: Path
) -> None:
    plane = installed.control_plane
    kubeconfig = token_kubeconfig(plane, PREFETCHER_ACCOUNT, tmp_path / "prefetcher.kubeconfig")
    probe = declared("nvcr.io/nvidia/cuda:12.4.1-runtime-ubuntu22.04") | {
        "metadata": {"name": "rbac-probe"}
    }
    with without_verb(
        installed, "Role", "image-sync-prefetcher", "pods", "create", names.POD_NAMESPACE_DEFAULT
    ):
        installed.apply(probe)
        prefetcher = start_prefetcher(kubeconfig, installed.config_file, tmp_path, "rbac-probe")
        try:
            lines = wait_for(
                lambda: log_lines(prefetcher.process.log(), FORBIDDEN),
                what="a 403 in the prefetcher's log",
            )
            assert any("pods" in line for line in lines), lines
            report = prefetcher.report()
            assert report is not None and report["summary"]["coverage"] < 1.0
        finally:
            prefetcher.process.stop()
            kubectl(plane, "delete", names.CACHED_IMAGE_CRD, "rbac-probe")

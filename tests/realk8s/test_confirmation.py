"""On a real control plane: a pod that a later admission step refuses is reviewed (and its
image learned) but never stored, so its image is never prefetched; a stored pod confirms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imagesync import names
from tests.realk8s.components import (
    PREFETCHER_ACCOUNT,
    Process,
    get_json,
    kubectl,
    start_prefetcher,
    token_kubeconfig,
)
from tests.realk8s.conftest import CPU_NODES, Installed, manifest_text
from tests.waiting import wait_for
from tests.webhook.conftest import WebhookProcess

REFUSED_IMAGE = "harbor.example.internal/library/refused:1.0"
STORED_IMAGE = "harbor.example.internal/library/app:1.0"


def pod(name: str, namespace: str, image: str, node: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": image}]}
    if node:
        spec["nodeName"] = node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def cached_image(installed: Installed, image: str) -> dict[str, Any] | None:
    items = get_json(installed.control_plane, names.CACHED_IMAGE_CRD)["items"]
    return next((item for item in items if item["spec"]["image"] == image), None)


def test_a_pod_refused_after_the_webhook_teaches_nothing_that_is_prefetched(
    installed: Installed, kubelets: Process, webhook: WebhookProcess, tmp_path: Path
) -> None:
    plane = installed.control_plane
    namespaces = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        for name in ("full", "open")
    ]
    # ResourceQuota admission runs after the mutating webhooks: the pod is reviewed, then refused.
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-pods", "namespace": "full"},
        "spec": {"hard": {"pods": "0"}},
    }
    installed.apply(*namespaces, quota)
    refused = kubectl(
        plane,
        "create",
        "-f",
        "-",
        stdin=manifest_text([pod("x", "full", REFUSED_IMAGE)]),
        check=False,
    )
    assert refused.returncode != 0 and "exceeded quota" in refused.stderr, refused.stderr
    learned = wait_for(
        lambda: cached_image(installed, REFUSED_IMAGE), what="the refused pod's image learned"
    )
    assert learned["spec"]["source"] == names.SOURCE_LEARNED  # the review alone taught it

    kubeconfig = token_kubeconfig(plane, PREFETCHER_ACCOUNT, tmp_path / "prefetcher.kubeconfig")
    prefetcher = start_prefetcher(kubeconfig, installed.config_file, tmp_path, "prefetcher-c")
    try:
        installed.apply(pod("web", "open", STORED_IMAGE, CPU_NODES[0]))
        wait_for(
            lambda: (
                "open"
                in ((cached_image(installed, STORED_IMAGE) or {}).get("status") or {}).get(
                    "confirmedNamespaces", []
                )
            ),
            timeout=120,
            what="the stored pod's image confirmed in its namespace",
        )

        def unconfirmed() -> dict[str, Any] | None:
            report = prefetcher.report()
            learning = (report or {}).get("learning") or {}
            return (
                report
                if REFUSED_IMAGE in learning.get("leftOut", {}).get("unconfirmed", [])
                else None
            )

        report = wait_for(unconfirmed, timeout=120, interval=0.5, what="the refused image left out")
        assert REFUSED_IMAGE not in {i["image"] for i in report["images"]}
        assert not ((cached_image(installed, REFUSED_IMAGE) or {}).get("status") or {}).get(
            "confirmedNamespaces"
        )
        pullers = get_json(
            plane, "pods", "-A", "-l", f"{names.LABEL_COMPONENT}={names.COMPONENT_PULLER}"
        )["items"]
        pulled = {
            c["image"]
            for p in pullers
            for section in ("initContainers", "containers")
            for c in p["spec"].get(section) or []
        }
        assert REFUSED_IMAGE not in pulled
    finally:
        prefetcher.process.stop()

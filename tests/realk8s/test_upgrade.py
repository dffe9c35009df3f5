"""Upgrading on the real control plane from the layout where puller and keeper pods ran in
`image-sync`: the prefetcher, under its shipped RBAC, deletes them and runs its own in the pod
namespace instead, leaving no orphan behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from imagesync import names
from tests.realk8s.components import (
    NAMESPACE,
    PREFETCHER_ACCOUNT,
    REFUSED,
    Process,
    get_json,
    kubectl,
    log_lines,
    start_prefetcher,
    token_kubeconfig,
)
from tests.realk8s.conftest import CPU_NODES, Installed
from tests.realk8s.test_end_to_end import declared
from tests.waiting import wait_for
from tests.webhook.conftest import WebhookProcess

IMAGE = "harbor.example.internal/library/app:1.0"


def old_keeper(node: str) -> dict[str, Any]:
    """A keeper as the previous release made it: in image-sync, sleeping on a node."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"isync-keep-0ld-{node}",
            "namespace": NAMESPACE,
            "labels": {
                names.LABEL_MANAGED_BY: names.MANAGED_BY,
                names.LABEL_COMPONENT: names.COMPONENT_KEEPER,
                names.LABEL_NODE: node,
            },
        },
        "spec": {
            "nodeName": node,
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65534,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "keep",
                    "image": IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }


def managed(installed: Installed, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get_json(
        installed.control_plane,
        "pods",
        "-n",
        namespace,
        "-l",
        f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}",
    )["items"]
    return items


def test_an_upgrade_leaves_no_pod_in_the_old_namespace(
    installed: Installed, kubelets: Process, webhook: WebhookProcess, tmp_path: Path
) -> None:
    plane = installed.control_plane
    old = [old_keeper(node) for node in CPU_NODES[:2]]
    installed.apply(*old)
    assert len(managed(installed, NAMESPACE)) == 2
    kubeconfig = token_kubeconfig(plane, PREFETCHER_ACCOUNT, tmp_path / "prefetcher.kubeconfig")
    probe = declared(IMAGE) | {"metadata": {"name": "upgrade-probe"}}
    installed.apply(probe)
    prefetcher = start_prefetcher(kubeconfig, installed.config_file, tmp_path, "upgraded")
    try:
        wait_for(lambda: not managed(installed, NAMESPACE), timeout=90, what="the old pods deleted")
        wait_for(
            lambda: any(
                p["metadata"]["labels"].get(names.LABEL_COMPONENT) == names.COMPONENT_KEEPER
                for p in managed(installed, names.POD_NAMESPACE_DEFAULT)
            ),
            timeout=120,
            what="keepers in the pod namespace",
        )
        assert not log_lines(prefetcher.process.log(), REFUSED)
        assert "left in image-sync by an older release" in prefetcher.process.log()
    finally:
        prefetcher.process.stop()
        kubectl(plane, "delete", names.CACHED_IMAGE_CRD, "upgrade-probe", "--wait=false")
    events = json.loads(kubectl(plane, "get", "events", "-n", NAMESPACE, "-o", "json").stdout)
    assert not [e for e in events["items"] if e.get("reason") == "PrefetchFailed"]

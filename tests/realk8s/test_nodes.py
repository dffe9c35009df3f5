"""Nodes coming and going on a real control plane: a joining node is warmed at once (not at
the next sweep, 30 minutes away), and a deleted node leaves the report and keeps no pods,
also seen after the watches were answered 410 Gone by a restarted API server over a
compacted etcd."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from imagesync import names
from tests.realk8s.components import (
    IMAGE_SYNC,
    PREFETCHER_ACCOUNT,
    Prefetcher,
    Process,
    get_json,
    kubectl,
    start_prefetcher,
    token_kubeconfig,
)
from tests.realk8s.conftest import Installed
from tests.realk8s.test_end_to_end import declared
from tests.waiting import wait_for

IMAGE = "docker.io/library/busybox:1.36"
JOINING = "gpu-3"  # the next node of the scenario's gpu pool


def sim_node(installed: Installed, *words: str) -> str:
    """`image-sync sim node ...` with the admin kubeconfig, as an operator scales the cluster."""
    result = subprocess.run(
        [
            IMAGE_SYNC,
            "sim",
            "node",
            *words,
            "--kubeconfig",
            str(installed.control_plane.kubeconfig),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def cell(prefetcher: Prefetcher, node: str) -> dict[str, Any] | None:
    report = prefetcher.report()
    if report is None:
        return None
    for entry in report["nodes"]:
        if entry["name"] == node:
            found: dict[str, Any] | None = entry["images"].get(IMAGE)
            return found
    return None


def node_in_report(prefetcher: Prefetcher, node: str) -> bool:
    report = prefetcher.report()
    return report is not None and any(entry["name"] == node for entry in report["nodes"])


def live_pods_on(installed: Installed, node: str) -> list[str]:
    pods = get_json(installed.control_plane, "pods", "-n", names.POD_NAMESPACE_DEFAULT, "--field-selector",
                    f"spec.nodeName={node}")["items"]  # fmt: skip
    return [p["metadata"]["name"] for p in pods if not p["metadata"].get("deletionTimestamp")]


def test_a_joining_node_is_warmed_and_a_deleted_node_leaves_after_a_compaction(
    installed: Installed, kubelets: Process, tmp_path: Path
) -> None:
    plane = installed.control_plane
    kubeconfig = token_kubeconfig(plane, PREFETCHER_ACCOUNT, tmp_path / "prefetcher.kubeconfig")
    installed.apply(declared(IMAGE) | {"metadata": {"name": "nodes-probe"}})
    prefetcher = start_prefetcher(kubeconfig, installed.config_file, tmp_path, "prefetcher-nodes")
    try:
        wait_for(lambda: (cell(prefetcher, "gpu-1") or {}).get("state") == "present",
                 timeout=90, what="the image on the existing nodes")  # fmt: skip

        assert f"node/{JOINING} created" in sim_node(installed, "add", "gpu")
        wait_for(lambda: (cell(prefetcher, JOINING) or {}).get("state") == "present",
                 timeout=90, what="the joining node warmed")  # fmt: skip
        keeper = wait_for(
            lambda: [
                p
                for p in get_json(plane, "pods", "-n", names.POD_NAMESPACE_DEFAULT, "-l",
                                  f"{names.LABEL_COMPONENT}={names.COMPONENT_KEEPER}")["items"]
                if p["spec"].get("nodeName") == JOINING and p["status"].get("phase") == "Running"
            ],
            what="a keeper on the joining node",
        )  # fmt: skip
        assert IMAGE in {c["image"] for c in keeper[0]["spec"]["containers"]}

        # etcd compacted and the API server restarted: every watch resumes from a
        # resourceVersion that is gone, is answered 410 and relists.
        plane.compact_etcd()
        plane.restart_apiserver(plane.apiserver_args)
        wait_for(lambda: "expired; relisting" in prefetcher.process.log(), what="a relist on 410")

        sim_node(installed, "remove", JOINING)
        wait_for(lambda: not node_in_report(prefetcher, JOINING), what="the node out of the report")
        # The Node owns its keeper: the garbage collector deletes it with the Node.
        wait_for(lambda: not live_pods_on(installed, JOINING), what="the node's pods deleted")
    finally:
        prefetcher.process.stop()
        kubectl(plane, "delete", names.CACHED_IMAGE_CRD, "nodes-probe", "--ignore-not-found")

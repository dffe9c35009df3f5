"""Two prefetcher replicas on a real Lease: one acts at a time, and when the leader is killed
mid-work the standby takes over and finishes, adopting its pods: none doubled, none orphaned."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Any

from imagesync import names
from tests.realk8s.components import (
    NAMESPACE,
    PREFETCHER_ACCOUNT,
    Prefetcher,
    Process,
    get_json,
    kubectl,
    start_prefetcher,
    token_kubeconfig,
)
from tests.realk8s.conftest import CPU_NODES, GPU_NODES, Installed
from tests.realk8s.test_end_to_end import declared
from tests.waiting import wait_for

IMAGE = "docker.io/library/nginx:1.27"
LEASE = "image-sync-prefetcher"


def holder(installed: Installed) -> str:
    lease = get_json(installed.control_plane, "lease", "-n", NAMESPACE, LEASE)
    return str(lease["spec"].get("holderIdentity") or "")


def managed_pods(installed: Installed) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = get_json(
        installed.control_plane,
        "pods",
        "-n",
        names.POD_NAMESPACE_DEFAULT,
        "-l",
        names.MANAGED_POD_SELECTOR,
    )["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def component(pod: dict[str, Any]) -> str:
    return str(pod["metadata"]["labels"][names.LABEL_COMPONENT])


def test_the_standby_takes_over_when_the_leader_is_killed(
    installed: Installed, kubelets: Process, tmp_path: Path
) -> None:
    plane = installed.control_plane
    kubeconfig = token_kubeconfig(plane, PREFETCHER_ACCOUNT, tmp_path / "prefetcher.kubeconfig")
    replicas = {
        identity: start_prefetcher(kubeconfig, installed.config_file, tmp_path, identity)
        for identity in ("replica-a", "replica-b")
    }
    try:
        first = wait_for(
            lambda: holder(installed) in replicas and holder(installed), what="a leader"
        )
        leader, standby = replicas[first], next(p for i, p in replicas.items() if i != first)
        wait_for(leader.is_leader, what="the leader acting")
        assert not standby.is_leader()

        # The leader starts pulling a newly declared image, and is killed while it does.
        installed.apply(declared(IMAGE) | {"metadata": {"name": "leader-probe"}})
        wait_for(
            lambda: (
                any(component(p) == names.COMPONENT_PULLER for p in managed_pods(installed))
                or IMAGE in str(leader.report())
            ),  # a pull that was quicker than this poll
            what="the leader's first puller pod",
            interval=0.05,
        )
        leader.process.stop(signal.SIGKILL)

        wait_for(lambda: holder(installed) == standby.identity, timeout=60, what="the takeover")
        wait_for(standby.is_leader, what="the new leader acting")
        report = wait_for(lambda: covered(standby), timeout=120, interval=0.5, what="coverage")
        states = {node: cell["state"] for node, cell in image_cells(report).items()}
        assert states == dict.fromkeys((*CPU_NODES, *GPU_NODES), "present"), states

        # One keeper per node, nothing left pulling, every pod on a node that exists.
        pods = wait_for(
            lambda: (
                all(component(p) == names.COMPONENT_KEEPER for p in managed_pods(installed))
                and managed_pods(installed)
            ),
            what="the pullers cleaned up",
        )
        per_node = Counter(p["spec"]["nodeName"] for p in pods)
        assert per_node == Counter((*CPU_NODES, *GPU_NODES)), per_node
        for pod in pods:
            [owner] = pod["metadata"]["ownerReferences"]
            assert (owner["kind"], owner["name"]) == ("Node", pod["spec"]["nodeName"])
            assert IMAGE in {c["image"] for c in pod["spec"]["containers"]}, pod["metadata"]["name"]
    finally:
        for replica in replicas.values():
            replica.process.stop()
        kubectl(plane, "delete", names.CACHED_IMAGE_CRD, "leader-probe", "--ignore-not-found")


def started_pulling(prefetcher: Prefetcher) -> bool:
    report = prefetcher.report()
    return any(
        image["image"] == IMAGE and cell["state"] in ("pulling", "present")
        for image in (report or {}).get("images", [])
        for cell in image["nodes"].values()
    )


def image_cells(report: dict[str, Any]) -> dict[str, Any]:
    [image] = [i for i in report["images"] if i["image"] == IMAGE]
    cells: dict[str, Any] = image["nodes"]
    return cells


def covered(prefetcher: Prefetcher) -> dict[str, Any] | None:
    report = prefetcher.report()
    if (
        report
        and report["summary"]["coverage"] == 1.0
        and any(i["image"] == IMAGE and i["wanted"] for i in report["images"])
    ):
        return report
    return None

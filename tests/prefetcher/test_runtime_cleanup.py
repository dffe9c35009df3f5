"""A node that joins or turns Ready cuts the clean-up of a pass short: its first puller is
planned by the next pass, not after seconds of other nodes' deletions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial

from kubernetes import client

from prefetcher.controller import Controller
from prefetcher.executor import CAN_WAIT_SECONDS, PassInfo
from prefetcher.informer import SystemClock
from prefetcher.kube import Kube
from prefetcher.metrics import Metrics
from tests.prefetcher.conftest import NAMESPACE, ensure_namespace, sim_config, untyped

PODS = 12


def finished_pod(name: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "image-sync"}},
        "spec": {"containers": [{"name": "c", "image": "docker.io/library/busybox:1.36"}]},
    }


def test_a_node_to_plan_at_once_ends_the_clean_up_after_its_chunk(api: client.ApiClient) -> None:
    config = sim_config(pod_namespace=NAMESPACE, write_workers=2)
    ensure_namespace(api)
    core = untyped(client.CoreV1Api(api))
    uids = {
        f"done-{i}": core.create_namespaced_pod(NAMESPACE, finished_pod(f"done-{i}")).metadata.uid
        for i in range(PODS)
    }
    controller: Controller

    def node_joins_at_the_first_deletion(kind: str) -> None:
        controller.trigger("node joined")

    controller = Controller(
        Kube(api, NAMESPACE),
        config,
        clock=SystemClock(),
        metrics=Metrics(),
        before_write=node_joins_at_the_first_deletion,
    )
    deletions: list[Callable[[], bool]] = [
        partial(controller._delete, name, uid) for name, uid in uids.items()
    ]
    info = PassInfo(trigger="pod changed", started=datetime.now(UTC))
    try:
        sent = controller._run_batch("delete pod", deletions, info, CAN_WAIT_SECONDS)
    finally:
        controller.stop()
    chunk = 2 * config.write_workers
    assert sent == chunk
    left = {pod.metadata.name for pod in core.list_namespaced_pod(NAMESPACE).items}
    assert len(left) == PODS - chunk

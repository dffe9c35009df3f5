"""The informer against the simulated API server: list + watch, resume, 410 relist, faults."""

from __future__ import annotations

import threading
from typing import Any

from kubernetes import client

from imagesync.kubeclient import KubeError
from prefetcher.informer import Change, Informer, InformerSettings, SystemClock
from prefetcher.plangate import PlanGate
from tests.prefetcher.conftest import untyped
from tests.waiting import wait_for

FAST = InformerSettings(page_size=7, watch_timeout=5, backoff_initial=0.05, backoff_max=0.2)


def node_body(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"n": name}}}


class Recorder:
    def __init__(self) -> None:
        self.changes: list[Change] = []
        self.errors: list[tuple[str, KubeError]] = []

    def change(self, change: Change) -> None:
        self.changes.append(change)

    def error(self, verb: str, error: KubeError) -> None:
        self.errors.append((verb, error))


def make_informer(api: client.ApiClient, recorder: Recorder) -> Informer:
    return Informer(
        "Node",
        untyped(client.CoreV1Api(api)).list_node,
        clock=SystemClock(),
        on_event=recorder.change,
        on_error=recorder.error,
        settings=FAST,
    )


def names(informer: Informer) -> set[str]:
    return {obj["metadata"]["name"] for obj in informer.items()}


def test_lists_in_pages_then_follows_changes(api: client.ApiClient) -> None:
    core = untyped(client.CoreV1Api(api))
    for i in range(20):
        core.create_node(node_body(f"n{i:02d}"))
    recorder = Recorder()
    informer = make_informer(api, recorder)
    informer.start()
    try:
        wait_for(informer.synced.is_set, what="first list")
        assert names(informer) == {f"n{i:02d}" for i in range(20)}
        core.create_node(node_body("late"))
        core.patch_node("n00", {"metadata": {"labels": {"x": "y"}}})
        core.delete_node("n01")
        wait_for(lambda: "late" in names(informer) and "n01" not in names(informer))
        wait_for(lambda: (informer.get("n00") or {})["metadata"]["labels"].get("x") == "y")
        kinds = {(c.key, c.old is None, c.new is None) for c in recorder.changes}
        assert ("late", True, False) in kinds
        assert ("n01", False, True) in kinds
        assert informer.relists == 1
    finally:
        informer.stop()
        informer.join(5)


def test_relists_when_its_resource_version_is_gone(api: client.ApiClient) -> None:
    core = untyped(client.CoreV1Api(api))
    core.create_node(node_body("keep"))
    core.create_node(node_body("gone"))
    recorder = Recorder()
    informer = make_informer(api, recorder)
    informer._relist()  # hold an old resourceVersion, as after a long disconnection
    core.delete_node("gone")
    for i in range(300):  # more than the server keeps (it trims its history past 2 x 100)
        core.patch_node("keep", {"metadata": {"labels": {"i": str(i)}}})
    core.create_node(node_body("new"))
    informer.start()
    try:
        wait_for(lambda: informer.relists >= 2, what="a relist after 410")
        wait_for(lambda: names(informer) == {"keep", "new"})
        assert (informer.get("keep") or {})["metadata"]["labels"]["i"] == "299"
        removed = [c for c in recorder.changes if c.key == "gone" and c.new is None]
        assert removed, "the relist reports what disappeared meanwhile"
    finally:
        informer.stop()
        informer.join(5)


def test_survives_dropped_watches_and_api_errors(api_server: Any, api: client.ApiClient) -> None:
    from simulator.apiserver import FaultRule

    core = untyped(client.CoreV1Api(api))
    api_server.set_faults(
        [
            FaultRule(path="/api/v1/nodes", verbs=("list",), status=500, times=2),
            FaultRule(path="/api/v1/nodes", verbs=("watch",), drop_watch_after=1, times=4),
        ]
    )
    recorder = Recorder()
    informer = make_informer(api, recorder)
    informer.start()
    try:
        wait_for(informer.synced.is_set, what="a list despite two 500s")
        for i in range(10):
            core.create_node(node_body(f"w{i}"))
        wait_for(lambda: names(informer) == {f"w{i}" for i in range(10)}, what="all nodes")
        assert [verb for verb, _ in recorder.errors].count("list") == 2
        assert informer.watches >= 4  # it re-watched after every drop
        assert informer.relists == 1  # resumed from its resourceVersion, no relist needed
    finally:
        api_server.clear_faults()
        informer.stop()
        informer.join(5)


def test_starting_pods_source_sees_bound_pending_workload_pods_only(api: client.ApiClient) -> None:
    """The hold-back's watch: pods bound to a node and Pending, not ours; one that starts
    running leaves the cache (a filtered watch sends DELETED), which triggers a pass."""
    from prefetcher.kube import Kube
    from prefetcher.observe import starting_pod
    from tests.prefetcher.conftest import NAMESPACE

    core = untyped(client.CoreV1Api(api))

    def pod(name: str, node: str = "", ours: bool = False) -> dict[str, Any]:
        labels = {"app.kubernetes.io/managed-by": "image-sync"} if ours else {"app": "x"}
        spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
        if node:
            spec["nodeName"] = node
        return {"metadata": {"name": name, "labels": labels}, "spec": spec}

    core.create_namespaced_pod(NAMESPACE, pod("train", node="n1"))
    core.create_namespaced_pod(NAMESPACE, pod("unbound"))
    core.create_namespaced_pod(NAMESPACE, pod("ours", node="n1", ours=True))
    recorder = Recorder()
    informer = Informer(
        "StartingPod",
        Kube(api, NAMESPACE).starting_pod_source(),
        clock=SystemClock(),
        on_event=recorder.change,
        settings=FAST,
    )
    informer.start()
    try:
        wait_for(informer.synced.is_set, what="the first list")
        assert names(informer) == {"train"}
        found = starting_pod(informer.items()[0])
        assert found is not None and (found.node, found.pod) == ("n1", f"{NAMESPACE}/train")
        core.patch_namespaced_pod_status("train", NAMESPACE, {"status": {"phase": "Running"}})
        wait_for(lambda: not names(informer), what="the started pod to leave")
        assert any(c.key.endswith("train") and c.new is None for c in recorder.changes)
    finally:
        informer.stop()
        informer.join(timeout=5)


def test_a_watch_that_ends_at_once_is_not_retried_in_a_tight_loop(
    api_server: Any, api: client.ApiClient
) -> None:
    import time

    from simulator.apiserver import FaultRule

    # Every node watch ends at once, with no event (a proxy that closes streams, say).
    api_server.set_faults([FaultRule(path="/api/v1/nodes", verbs=("watch",), drop_watch_after=0)])
    informer = Informer(
        "Node",
        untyped(client.CoreV1Api(api)).list_node,
        clock=SystemClock(),
        on_event=Recorder().change,
        settings=InformerSettings(watch_timeout=5, backoff_initial=0.2, backoff_max=0.4),
    )
    informer.start()
    try:
        wait_for(informer.synced.is_set, what="first list")
        time.sleep(2.0)
    finally:
        informer.stop()
        informer.join(timeout=5)
        api_server.clear_faults()
    # Waiting 0.2 s, then at most 0.4 s (plus jitter) between watches: a handful in 2 s, where
    # a tight loop makes hundreds.
    assert 2 <= informer.watches <= 12, informer.watches


def test_a_closed_plan_gate_holds_the_watch_events_until_the_plan_ends(
    api: client.ApiClient,
) -> None:
    """What arrives while a plan runs is decoded once it ends: nothing is lost, and nothing
    competes with the plan for the interpreter."""
    core = untyped(client.CoreV1Api(api))
    core.create_node(node_body("before"))
    gate = PlanGate(max_wait=300.0)
    recorder = Recorder()
    informer = Informer(
        "Node",
        core.list_node,
        clock=SystemClock(),
        on_event=recorder.change,
        settings=FAST,
        gate=gate,
    )
    informer.start()
    try:
        wait_for(informer.synced.is_set, what="first list")
        with gate.closed():
            core.create_node(node_body("during"))
            wait_for(lambda: gate.waiting == 1, what="the watch's thread waiting at the gate")
            assert names(informer) == {"before"}
        wait_for(lambda: names(informer) == {"before", "during"}, what="the event after the plan")
        assert [c.key for c in recorder.changes if not c.initial] == ["during"]
    finally:
        informer.stop()
        informer.join(timeout=5)


def test_each_relist_ends_with_its_hook_on_the_informers_thread(api: client.ApiClient) -> None:
    """The hook gives back what a relist's pages took (the prefetcher trims malloc there)."""
    core = untyped(client.CoreV1Api(api))
    for i in range(10):
        core.create_node(node_body(f"r{i}"))
    recorder = Recorder()
    relisted: list[tuple[int, str]] = []
    informer = Informer(
        "Node",
        untyped(client.CoreV1Api(api)).list_node,
        clock=SystemClock(),
        on_event=recorder.change,
        settings=FAST,
        after_relist=lambda: relisted.append((len(informer), threading.current_thread().name)),
    )
    informer._relist()  # an old resourceVersion: the watch gets 410 and lists again
    relisted.clear()
    for i in range(300):  # more than the server keeps (it trims its history past 2 x 100)
        core.patch_node("r0", {"metadata": {"labels": {"i": str(i)}}})
    informer.start()
    try:
        wait_for(lambda: len(relisted) == 1, what="the relist after 410")
        assert relisted == [(10, "informer-Node")]  # the cache already replaced
    finally:
        informer.stop()
        informer.join(5)

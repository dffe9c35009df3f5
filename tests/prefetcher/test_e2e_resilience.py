"""End to end on the simulator: crashes mid-sweep, two replicas, API errors, dropped watches,
and a converged cluster that a sweep leaves alone."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kubernetes import client

from tests.prefetcher.conftest import (
    BUSYBOX,
    CUDA,
    GPU_SELECTOR,
    NAMESPACE,
    POD_NAMESPACE,
    SMALL,
    Running,
    declare,
    our_pods,
    report,
    sim_config,
    untyped,
)
from tests.waiting import wait_for

COMPONENT = "app.kubernetes.io/component"


class Crash(BaseException):
    """Ends the controller thread where it stands, as a killed process would."""


def converged(sim: Any, api: client.ApiClient, prefetcher: Any) -> bool:
    """Coverage 1.0, exactly one keeper per node, no puller left, nothing on a missing node."""
    r = report(prefetcher)
    if r["summary"]["coverage"] != 1.0 or not r["summary"]["wantedPairs"]:
        return False
    pods = our_pods(api)
    keepers = sorted(p.spec.node_name for p in pods if p.metadata.labels[COMPONENT] == "keeper")
    pullers = [p for p in pods if p.metadata.labels[COMPONENT] == "puller"]
    return not pullers and keepers == sim.node_names()


def declare_three(api: client.ApiClient) -> None:
    declare(api, SMALL)
    declare(api, BUSYBOX)
    declare(api, CUDA, GPU_SELECTOR)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_leader_killed_mid_sweep_standby_converges_without_duplicates_or_orphans(
    sim: Any, prefetchers: Running
) -> None:
    api = sim.api_client()
    declare_three(api)
    crashed = threading.Event()
    writes: list[str] = []

    def crash_on_fourth_write(kind: str) -> None:
        writes.append(kind)
        if len(writes) == 4:
            crashed.set()
            raise Crash(kind)

    # Lease timings in simulated seconds: a standby takes over 2 wall seconds after a crash.
    config = sim_config(lease_duration=120.0, lease_renew_deadline=80.0, lease_retry_period=10.0)
    first = prefetchers.start(config, identity="replica-a", before_write=crash_on_fourth_write)
    wait_for(first.is_leader, timeout=30, what="replica-a leading")
    second = prefetchers.start(config, identity="replica-b")
    wait_for(crashed.is_set, timeout=60, what="the crash mid-sweep")
    first.stop(release=False)  # the process is gone: no renewals, the Lease is not handed back
    written = len(our_pods(api))
    assert 0 < written < 2 * len(sim.node_names()), "the crash left the sweep half done"

    wait_for(second.is_leader, timeout=60, what="replica-b taking over")
    wait_for(lambda: converged(sim, api, second), timeout=180, interval=0.5, what="convergence")
    lease = untyped(client.CoordinationV1Api(api)).read_namespaced_lease(
        config.lease_name, NAMESPACE
    )
    assert lease.spec.holder_identity == "replica-b"
    assert lease.spec.lease_transitions >= 1
    assert not first.is_leader()


def test_restarted_prefetcher_adopts_what_exists(sim: Any, prefetchers: Running) -> None:
    api = sim.api_client()
    declare_three(api)
    config = sim_config(lease_duration=120.0, lease_renew_deadline=80.0, lease_retry_period=10.0)
    first = prefetchers.start(config, identity="run-1")
    wait_for(lambda: converged(sim, api, first), timeout=180, interval=0.5, what="convergence")
    before = {p.metadata.name: p.metadata.uid for p in our_pods(api)}
    first.stop()  # a clean shutdown hands the Lease back
    second = prefetchers.start(config, identity="run-2")
    wait_for(second.is_leader, timeout=30, what="the restarted process leading")
    wait_for(lambda: second.controller.passes >= 2, timeout=60, what="two passes")
    assert converged(sim, api, second)
    after = {p.metadata.name: p.metadata.uid for p in our_pods(api)}
    assert after == before, "it adopted every pod and created or deleted none"


def test_api_errors_and_dropped_watches_are_survived(sim: Any, prefetchers: Running) -> None:
    from simulator.apiserver import FaultRule

    api = sim.api_client()
    declare_three(api)
    sim.server.set_faults(
        [
            FaultRule(
                path=f"/api/v1/namespaces/{POD_NAMESPACE}/pods",
                verbs=("create",),
                status=500,
                rate=0.3,
            ),
            # No fault on pod deletes: the simulated kubelet's own final delete of a pod would
            # get it too, and it does not retry (a real kubelet does).
            FaultRule(
                path="/apis/image-sync.io/v1alpha1/cachedimages",
                verbs=("list",),
                status=500,
                times=2,
            ),
            FaultRule(
                path=f"/api/v1/namespaces/{POD_NAMESPACE}/pods",
                verbs=("watch",),
                drop_watch_after=2,
                times=20,
            ),
            FaultRule(
                path="/apis/image-sync.io/v1alpha1/cachedimages",
                verbs=("watch",),
                drop_watch_after=0,
                times=5,
            ),
        ],
        seed=7,
    )
    prefetcher = prefetchers.start()
    try:
        wait_for(
            lambda: converged(sim, api, prefetcher),
            timeout=240,
            interval=0.5,
            what="convergence under faults",
        )
    except AssertionError as exc:
        r = report(prefetcher)
        pods = [(p.metadata.name, p.spec.node_name, p.status.phase) for p in our_pods(api)]
        state = {"summary": r["summary"], "lastPass": r["runtime"]["lastPass"], "pods": pods}
        raise AssertionError(f"{exc}; state: {state}") from None
    finally:
        sim.server.clear_faults()
    runtime = report(prefetcher)["runtime"]
    assert runtime["apiErrors"] >= 3
    assert runtime["watches"]["Pod"]["watches"] > 1, "dropped watches were resumed"
    errors = {
        (s.labels["verb"], s.labels["code"]): s.value
        for s in prefetcher.metrics.api_errors.collect()[0].samples
        if s.name.endswith("_total")
    }
    assert errors.get(("list", "500")) == 2, "the informer retried its failed lists"
    assert errors.get(("create", "500")), "failed creates were counted and retried"


def test_converged_cluster_sees_zero_writes_in_a_steady_state_sweep(
    sim: Any, prefetchers: Running
) -> None:
    api = sim.api_client()
    declare_three(api)
    prefetcher = prefetchers.start(sim_config(sweep_interval=600.0))  # 10 wall seconds
    wait_for(lambda: converged(sim, api, prefetcher), timeout=180, interval=0.5, what="convergence")
    # Let the status writes of the last pulls settle, then take stock.
    wait_for(
        lambda: not prefetcher.controller.last_plan.writes, timeout=60, what="a plan with no writes"
    )
    last_sweep = report(prefetcher)["runtime"]["lastSweep"]["started"]
    writes = {k: v for k, v in prefetcher.metrics.writes().items() if k[1] != "leases"}
    images = untyped(client.CustomObjectsApi(api)).list_cluster_custom_object(
        "image-sync.io", "v1alpha1", "cachedimages"
    )
    versions = {i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in images["items"]}
    pods = {p.metadata.name: p.metadata.uid for p in our_pods(api)}

    sweep = wait_for(
        lambda: (s := report(prefetcher)["runtime"]["lastSweep"])["started"] != last_sweep and s,
        timeout=120,
        interval=0.5,
        what="the next sweep",
    )
    assert sweep["actions"] == {} and sweep["apiErrors"] == 0
    assert {k: v for k, v in prefetcher.metrics.writes().items() if k[1] != "leases"} == writes
    images = untyped(client.CustomObjectsApi(api)).list_cluster_custom_object(
        "image-sync.io", "v1alpha1", "cachedimages"
    )
    assert {
        i["metadata"]["name"]: i["metadata"]["resourceVersion"] for i in images["items"]
    } == versions
    assert {p.metadata.name: p.metadata.uid for p in our_pods(api)} == pods

"""Reading our puller and keeper pods into the model, and what they prove present."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from prefetcher import cacheforms, observe, presence
from prefetcher.model import ContainerObservation, ManagedPod
from prefetcher.pods import build_keeper, build_puller
from tests.prefetcher.test_core_fixtures import APP, BUSYBOX, PYTORCH, config, node


def test_managed_pod_round_trips_the_pods_we_build() -> None:
    n = node("cpu-1")
    puller = build_puller(n, [APP, BUSYBOX, PYTORCH], config(), deadline_seconds=700)
    puller["metadata"]["uid"] = "p-1"
    names = [c["name"] for c in puller["spec"]["containers"]]
    puller["status"] = {
        "phase": "Pending",
        "containerStatuses": [
            {
                "name": names[0],
                "image": APP,
                "state": {"waiting": {"reason": "ErrImagePull", "message": "manifest unknown"}},
            },
            {"name": names[1], "image": BUSYBOX, "state": {"terminated": {"exitCode": 0}}},
            {
                "name": names[2],
                "image": PYTORCH,
                "state": {"waiting": {"reason": "ContainerCreating"}},
            },
        ],
    }
    pod = observe.managed_pod(puller)
    assert pod is not None and pod.role == "puller" and pod.node == "cpu-1"
    assert pod.images == (APP, BUSYBOX, PYTORCH)  # pull order
    assert pod.active_deadline == 700 and pod.attempt == 1
    results = presence.puller_results(pod)
    assert set(results) == {APP, BUSYBOX}  # PYTORCH is still to come
    assert (results[APP].reason, results[APP].kind) == ("ErrImagePull", "not-found")
    assert results[BUSYBOX].succeeded
    assert presence.present_images([pod]) == {"cpu-1": frozenset({BUSYBOX})}

    keeper = build_keeper(n, [BUSYBOX, APP], config())
    keeper["metadata"]["deletionTimestamp"] = "2026-11-22T00:00:00Z"
    keeper["status"] = {
        "phase": "Running",
        "containerStatuses": [
            {"name": c["name"], "image": c["image"], "state": {"running": {}}}
            for c in keeper["spec"]["containers"]
        ],
    }
    pod = observe.managed_pod(keeper)
    assert pod is not None and pod.role == "keeper" and pod.deleting
    assert pod.images == (BUSYBOX, APP)  # sorted
    assert presence.keeper_running_images(pod) == {APP, BUSYBOX}


def test_the_slim_cache_entry_of_a_puller_or_keeper_reads_the_same() -> None:
    # The informer keeps only what managed_pod and the executor read: the same ManagedPod
    # comes out, from far less (no security contexts, mounts, resources, tolerations).
    import json

    n = node("cpu-1")
    puller = build_puller(n, [APP, BUSYBOX], config(), deadline_seconds=700)
    puller["metadata"].update(uid="p-1", resourceVersion="7", namespace="image-sync-cache")
    names = [c["name"] for c in puller["spec"]["containers"]]
    puller["status"] = {
        "phase": "Failed",
        "reason": "DeadlineExceeded",
        "message": "too long",
        "podIP": "10.0.0.1",
        "initContainerStatuses": [
            {"name": "install", "image": "tools", "state": {"terminated": {"exitCode": 0}}}
        ],
        "containerStatuses": [
            {
                "name": names[0],
                "image": APP,
                "imageID": "sha256:1",
                "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "finishedAt": "2026-11-22T00:00:05Z"}},
            },
            {
                "name": names[1],
                "image": BUSYBOX,
                "state": {"waiting": {"reason": "ErrImagePull", "message": "no such host"}},
            },
        ],
    }
    keeper = build_keeper(n, [BUSYBOX, APP], config())
    keeper["metadata"]["deletionTimestamp"] = "2026-11-22T00:00:00Z"
    keeper["status"] = {
        "phase": "Running",
        "containerStatuses": [
            {
                "name": c["name"],
                "image": c["image"],
                "imageID": "sha256:2",
                "ready": True,
                "state": {"running": {"startedAt": "2026-11-22T00:00:01Z"}},
            }
            for c in keeper["spec"]["containers"]
        ],
    }
    for full in (puller, keeper):
        slim = cacheforms.slim_managed_pod(json.loads(json.dumps(full)))
        assert observe.managed_pod(slim) == observe.managed_pod(full)
        assert slim["metadata"] == {
            k: v
            for k, v in full["metadata"].items()
            if k not in ("managedFields", "ownerReferences")
        }
        assert set(slim["spec"]) <= {"nodeName", "activeDeadlineSeconds"}
        assert set(slim["status"]) <= {"phase", "reason", "message", observe.OBSERVED}
    # The ManagedPod made of the slim form shares its observations: one form of each.
    slim = cacheforms.slim_managed_pod(puller)
    made = observe.managed_pod(slim)
    assert made is not None and made.containers is slim["status"][observe.OBSERVED].containers


def test_a_finished_puller_is_cached_small() -> None:
    # Twenty thousand finished pullers wait for their keepers while a thousand nodes
    # converge: what the cache keeps of one (and the ManagedPod made of it) stays small.
    import json
    import tracemalloc

    n = node("cpu-1")
    images = [f"harbor.example.internal/library/app-{i}:1.0" for i in range(10)]
    moment = "2026-11-22T00:00:05Z"

    def finished(index: int) -> dict[str, Any]:
        pod = build_puller(n, images, config(), deadline_seconds=700)
        pod["metadata"].update(
            uid=f"p-{index}", resourceVersion=str(index), creationTimestamp=moment
        )
        done = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": moment}}
        pod["status"] = {
            "phase": "Succeeded",
            "initContainerStatuses": [{"name": "install", "image": "tools", "state": done}],
            "containerStatuses": [
                {"name": c["name"], "image": c["image"], "imageID": "sha256:1", "state": done}
                for c in pod["spec"]["containers"]
            ],
        }
        copied: dict[str, Any] = json.loads(json.dumps(pod))  # as decoded from the API
        return copied

    raw = [finished(i) for i in range(200)]
    tracemalloc.start()
    try:
        kept = [cacheforms.slim_managed_pod(pod) for pod in raw]
        made = [observe.managed_pod(pod) for pod in kept]
        size = tracemalloc.get_traced_memory()[0] / len(raw)
    finally:
        tracemalloc.stop()
    assert all(m == observe.managed_pod(r) for m, r in zip(made, raw, strict=True))
    assert size < 4000  # bytes; the API's form, slimmed as dicts, took over 10 kB


def test_a_cached_keeper_is_the_set_of_images_it_runs() -> None:
    # A keeper's running container only says its image is held: the cache keeps the images,
    # not 200 container statuses per node; one that does not run keeps its reason.
    keeper = build_keeper(node("cpu-1"), [BUSYBOX, APP, PYTORCH], config())
    keeper["metadata"].update(uid="k-1", resourceVersion="3")
    running = {"running": {"startedAt": "2026-11-22T00:00:01Z"}}
    gone = {"waiting": {"reason": "ErrImageNeverPull", "message": "not present"}}
    keeper["status"] = {
        "phase": "Running",
        "containerStatuses": [
            {
                "name": c["name"],
                "image": c["image"],
                "state": gone if PYTORCH in c["image"] else running,
            }
            for c in keeper["spec"]["containers"]
        ],
    }
    slim = cacheforms.slim_managed_pod(keeper)
    seen = slim["status"][observe.OBSERVED]
    assert seen.running == {APP, BUSYBOX}
    assert [c.state for c in seen.containers] == ["waiting"]
    pod = observe.managed_pod(slim)
    assert pod is not None and pod == observe.managed_pod(keeper)
    assert presence.keeper_running_images(pod) == {APP, BUSYBOX}
    assert [c.reason for c in pod.containers] == ["ErrImageNeverPull"]
    assert presence.keeper_settled(pod)
    assert presence.present_images([pod]) == {"cpu-1": frozenset({APP, BUSYBOX})}


def test_other_pods_are_not_ours() -> None:
    assert observe.managed_pod({"metadata": {"name": "x", "labels": {}}}) is None


def _puller(
    *containers: ContainerObservation, phase: str = "Pending", reason: str = ""
) -> ManagedPod:
    return ManagedPod(
        name="p",
        uid="u",
        node="n",
        role="puller",
        images=(APP,),
        phase=phase,
        reason=reason,
        containers=containers,
        active_deadline=900,
    )


def _result(pod: ManagedPod) -> presence.PullResult | None:
    return presence.puller_results(pod).get(APP)


def test_puller_outcomes() -> None:
    done = ContainerObservation("pull", APP, "terminated", exit_code=0)
    crashed = ContainerObservation("pull", APP, "terminated", exit_code=127)
    creating = ContainerObservation("pull", APP, "waiting", reason="ContainerCreating")
    unauthorized = ContainerObservation(
        "pull", APP, "waiting", reason="ErrImagePull", message="401 Unauthorized"
    )
    platform = ContainerObservation(
        "pull",
        APP,
        "waiting",
        reason="ErrImagePull",
        message="no matching manifest for linux/arm64 in the manifest list entries",
    )
    tools = ContainerObservation(
        "install-sleeper", "t", "waiting", reason="ImagePullBackOff", init=True
    )
    assert _result(_puller(done)) == presence.PullResult(True)
    ok = _result(_puller(crashed))
    assert ok is not None and ok.succeeded  # the container was created: the image is there
    assert _result(_puller(creating)) is None
    assert _result(_puller()) is None
    bad = _result(_puller(unauthorized))
    assert bad is not None and bad.kind == "unauthorized" and bad.message == "401 Unauthorized"
    plat = _result(_puller(platform))
    assert plat is not None and plat.kind == "no-matching-platform"
    init = _result(_puller(tools))
    assert init is not None and init.message.startswith("tools image t:")
    late = _result(_puller(phase="Failed", reason="DeadlineExceeded"))
    assert late is not None and late.kind == "deadline" and "900 s" in late.message
    evicted = _result(_puller(phase="Failed", reason="Evicted"))
    assert evicted is not None and evicted.reason == "Evicted" and evicted.message


def test_a_batch_ends_per_image() -> None:
    """Images pulled before a batch puller ran out of time count; the rest failed."""
    pod = replace(
        _puller(
            ContainerObservation("a", APP, "terminated", exit_code=137),
            ContainerObservation("b", BUSYBOX, "waiting", reason="ContainerCreating"),
            phase="Failed",
            reason="DeadlineExceeded",
        ),
        images=(APP, BUSYBOX),
    )
    results = presence.puller_results(pod)
    assert results[APP].succeeded
    assert not results[BUSYBOX].succeeded and results[BUSYBOX].kind == "deadline"


def test_a_puller_of_an_earlier_version_names_one_image() -> None:
    manifest = build_puller(node("n"), [APP], config(), deadline_seconds=60)
    annotations = manifest["metadata"]["annotations"]
    del annotations["image-sync.io/images"]
    annotations["image-sync.io/image"] = APP
    pod = observe.managed_pod(manifest)
    assert pod is not None and pod.images == (APP,)


def test_presence_is_keepers_running_plus_successful_pullers() -> None:
    keeper = ManagedPod(
        name="k",
        uid="k",
        node="a",
        role="keeper",
        images=(APP, BUSYBOX),
        phase="Running",
        containers=(
            ContainerObservation("c0", APP, "running"),
            ContainerObservation("c1", BUSYBOX, "waiting", reason="ErrImageNeverPull"),
        ),
    )
    pulled = ManagedPod(
        name="p",
        uid="p",
        node="b",
        role="puller",
        images=(PYTORCH,),
        phase="Succeeded",
        containers=(ContainerObservation("pull", PYTORCH, "terminated", exit_code=0),),
    )
    pulling = ManagedPod(name="q", uid="q", node="b", role="puller", images=(APP,))
    present = presence.present_images([keeper, pulled, pulling])
    assert present == {"a": frozenset({APP}), "b": frozenset({PYTORCH})}
    assert presence.keeper_settled(keeper) is True

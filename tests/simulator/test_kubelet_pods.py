"""The kubelet's pods: phases and exit codes, restarts, init containers, deadlines, deletion, admission, events."""

from __future__ import annotations

from tests.simulator.noderuntime_fixtures import (
    T0,
    make_node,
    make_pod,
    pod_status,
)


def test_job_completes_and_failure_exit_code() -> None:
    node = make_node()
    node.sync_pod(
        make_pod(
            "ok",
            "busybox:1.36",
            restartPolicy="Never",
            annotations={"sim.image-sync.io/run-seconds": "5"},
        )
    )
    node.sync_pod(
        make_pod(
            "bad",
            "busybox:1.36",
            restartPolicy="Never",
            annotations={"sim.image-sync.io/run-seconds": "5", "sim.image-sync.io/exit-code": "3"},
        )
    )
    for t in range(0, 20):
        node.advance(T0 + t)
    ok = pod_status(node, "ok")
    assert ok["phase"] == "Succeeded"
    assert ok["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    bad = pod_status(node, "bad")
    assert bad["phase"] == "Failed"
    assert bad["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3


def test_always_restarts_with_crash_loop_backoff() -> None:
    node = make_node()
    node.sync_pod(make_pod("p", "busybox:1.36", annotations={"sim.image-sync.io/run-seconds": "5"}))
    for t in range(0, 40):
        node.advance(T0 + t)
    status = pod_status(node, "p")
    assert status["phase"] == "Running"
    assert status["containerStatuses"][0]["restartCount"] >= 2


def test_init_containers_run_in_order() -> None:
    node = make_node()
    pod = make_pod("p", "busybox:1.36")
    pod["spec"]["initContainers"] = [{"name": "init", "image": "app:latest"}]
    node.sync_pod(pod)
    node.advance(T0)
    status = pod_status(node, "p")
    assert status["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Initialized"]["reason"] == "ContainersNotInitialized"
    for t in range(1, 15):
        node.advance(T0 + t)
    status = pod_status(node, "p")
    assert status["phase"] == "Running"
    assert status["initContainerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"


def test_active_deadline() -> None:
    node = make_node()
    node.sync_pod(make_pod("p", "busybox:1.36", activeDeadlineSeconds=10))
    for t in range(0, 15):
        node.advance(T0 + t)
    status = pod_status(node, "p")
    assert status["phase"] == "Failed"
    assert status["reason"] == "DeadlineExceeded"


def test_deletion_asks_for_final_delete() -> None:
    node = make_node()
    pod = make_pod("p", "busybox:1.36")
    node.sync_pod(pod)
    node.advance(T0 + 5)
    pod["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    node.sync_pod(pod)
    assert node.take_deletions() == [("default", "p", "uid-p")]


def test_kubelet_admission_rejects_pods_that_do_not_fit() -> None:
    node = make_node(gpus=0)
    gpu = make_pod("gpu", "busybox:1.36")
    gpu["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
    node.sync_pod(gpu)
    node.sync_pod(
        make_pod("elsewhere", "busybox:1.36", nodeSelector={"nvidia.com/gpu.present": "true"})
    )
    node.sync_pod(make_pod("fine", "busybox:1.36"))
    node.advance(T0 + 5)
    rejected = pod_status(node, "gpu")
    assert rejected["phase"] == "Failed"
    assert rejected["reason"] == "OutOfnvidia.com/gpu"
    assert rejected["message"].startswith(
        "Pod was rejected: Node didn't have enough resource: nvidia.com/gpu, requested: 1"
    )
    assert pod_status(node, "elsewhere")["reason"] == "NodeAffinity"
    assert pod_status(node, "fine")["phase"] == "Running"


def test_run_duration_from_annotation_or_sleeper_command() -> None:
    node = make_node()
    keeper = make_pod("keeper", "busybox:1.36", restartPolicy="Never")
    keeper["spec"]["containers"][0]["command"] = ["/image-sync/sleeper"]
    sleeper = make_pod("sleep5", "busybox:1.36", restartPolicy="Never")
    sleeper["spec"]["containers"][0]["command"] = ["sh", "-c"]
    sleeper["spec"]["containers"][0]["args"] = ["sleep", "5"]
    node.sync_pod(keeper)
    node.sync_pod(sleeper)
    node.sync_pod(make_pod("job", "busybox:1.36", restartPolicy="Never"))
    for t in range(0, 100, 2):
        node.advance(T0 + t)
    assert pod_status(node, "keeper")["phase"] == "Running"
    assert pod_status(node, "sleep5")["phase"] == "Succeeded"
    assert pod_status(node, "job")["phase"] == "Succeeded"  # the 30 s default


def test_a_pod_seen_after_the_last_advance_starts_when_seen() -> None:
    """The kubelet set syncs a pod at its own `now`: nothing of the pod happens earlier (its
    startTime and container times never precede the creationTimestamp)."""
    from simulator.clock import parse_time

    node = make_node()
    node.advance(T0)
    node.sync_pod(make_pod("p", "busybox:1.36"), T0 + 5)
    node.advance(T0 + 5)
    node.advance(T0 + 8)
    events = [(e.reason, e.at - T0) for e in node.take_events()]
    assert events == [("Pulling", 5.0), ("Pulled", 6.0), ("Created", 7.0), ("Started", 7.0)]
    status = pod_status(node, "p")
    assert parse_time(status["startTime"]) == T0 + 5
    started = status["containerStatuses"][0]["state"]["running"]["startedAt"]
    assert parse_time(started) == T0 + 7  # pulled in 1 s, created in 1 s
    pod = make_pod("p", "busybox:1.36")
    pod["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    node.sync_pod(pod, T0 + 9)
    killing = [e for e in node.take_events() if e.reason == "Killing"]
    assert [e.at - T0 for e in killing] == [9.0]
    container = node.pods["uid-p"].containers[0]
    assert container.finished_at == T0 + 9


def test_events_of_one_pod_are_spam_filtered_like_client_go() -> None:
    """25 events about one object at once, then one every 5 minutes (the recorder's filter)."""
    node = make_node(preloaded_images=("docker.io/library/busybox:1.36",))
    node.sync_pod(make_pod("many", *["busybox:1.36"] * 30))
    node.sync_pod(make_pod("one", "busybox:1.36"))
    node.advance(T0)
    node.advance(T0 + 5)
    events = node.take_events()
    many = [e for e in events if e.name == "many"]
    assert len(many) == 25  # of 90: Pulled, Created, Started for each of 30 containers
    assert [e.reason for e in events if e.name == "one"] == ["Pulled", "Created", "Started"]
    assert all("running" in c["state"] for c in pod_status(node, "many")["containerStatuses"])
    pod = make_pod("many", *["busybox:1.36"] * 30)
    pod["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    node.sync_pod(pod, T0 + 5 + 300)  # 30 Killing events, 5 minutes later: one gets through
    assert len(node.take_events()) == 1

"""bench/week_tail.py: what the slowest pods of a replay waited for, counted from the run."""

from __future__ import annotations

from bench.week import SEED
from bench.week_tail import recording_scheduler, replay_tail, tail
from simulator.virtual.cluster import VirtualCluster
from simulator.virtual.policy import Policy
from tests.virtual.small_cluster import GPU_IMAGE, pod, scenario

TOLERATION = ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},)
SELECTOR = {"nvidia.com/gpu.present": "true"}


def test_a_job_waiting_for_a_whole_node_is_counted_short_of_gpus_and_bound_when_one_frees() -> None:
    jobs = [
        pod(
            f"train-{i}",
            0.0,
            GPU_IMAGE,
            duration=600.0 + 60 * i,
            gpus=8,
            tolerations=TOLERATION,
            node_selector=SELECTOR,
        )
        for i in range(3)
    ]
    cluster = VirtualCluster(scenario(gpu_nodes=2), jobs, Policy(), 3600.0)
    recording = recording_scheduler(cluster)
    cluster.run()
    figures = tail(cluster, recording, "none")

    waiting = next(p for p in cluster.workload if p.name == "train-2")
    assert waiting.bound_at is not None and waiting.bound_at > 600.0
    assert figures.kinds == {"train, 8 GPUs": 1}  # the slowest 1 % of 3 pods: one
    waited = waiting.bound_at - waiting.created
    assert figures.short_minutes == int((waited - 1.0) // 60) + 1  # no GPU free: short
    assert figures.split_minutes == 0
    assert figures.freed_at_once == 1  # bound as a job ended on its node
    assert figures.overtaken == 0
    assert (figures.placed, figures.moved, figures.tied) == (3, 0, 1)  # two empty nodes tie once


def test_recording_leaves_the_replay_as_the_evaluation_runs_it() -> None:
    from bench.evaluate_virtual import week_run

    recorded = replay_tail("roomy", "none", 0.25, SEED, None)
    result, _ = week_run("roomy", "none", 0.25)
    assert recorded.p99 == result.figures()["running_p99"]
    assert 0 < recorded.moved < recorded.placed

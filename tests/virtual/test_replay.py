"""Small replays end to end under every policy: sensible relations, identical repeats."""

from __future__ import annotations

from dataclasses import replace

import pytest

from imagesync.config import Config, load_config
from imagesync.matching import parse_prefix
from simulator.virtual import replay
from simulator.virtual.pods import PodSpec
from simulator.virtual.results import RunResult
from tests.virtual.small_cluster import APP, BIG, GPU_IMAGE, pod, scenario

GPU = {
    "gpus": 8,
    "node_selector": {"nvidia.com/gpu.present": "true"},
    "tolerations": ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},),
}


def config() -> Config:
    prefixes = (parse_prefix("harbor.example.internal"), parse_prefix("nvcr.io/nvidia"))
    return replace(load_config(None, environ={}), registries=prefixes)


def pods() -> list[PodSpec]:
    """Services and jobs arriving over an hour, each job filling a node so the next one
    lands on another; a GPU node joins at 15 min."""
    out = [pod(f"web-{i}", 0.0, APP, duration=None) for i in range(2)]
    out += [pod(f"batch-{i}", 300.0 + 300 * i, BIG, duration=500.0, cpu=15.0) for i in range(6)]
    out += [pod(f"train-{i}", 600.0 + 600 * i, GPU_IMAGE, duration=700.0, **GPU) for i in range(5)]
    out += [pod(f"web-b-{i}", 2400.0, APP, duration=None) for i in range(3)]
    return out


def work() -> replay.Workload:
    events = [{"at": 900, "action": "join", "pool": "gpu", "count": 1}]
    setup = scenario(cpu_nodes=3, gpu_nodes=1, events=events)
    return replay.workload(
        setup, pods(), [APP, {"image": GPU_IMAGE, "nodeSelector": GPU["node_selector"]}]
    )


@pytest.fixture(scope="module")
def results() -> dict[str, RunResult]:
    return {policy: replay.run(work(), policy, config()) for policy in replay.POLICIES}


def test_every_policy_binds_and_starts_every_pod(results: dict[str, RunResult]) -> None:
    for result in results.values():
        figures = result.figures()
        assert figures["pods_bound"] == figures["pods_created"] == len(pods())
        assert figures["pods_started"] == len(pods())


def test_prefetching_policies_hit_more_than_none(results: dict[str, RunResult]) -> None:
    none = results["none"].figures()["hit_rate"]
    assert results["oracle"].figures()["hit_rate"] >= none
    assert results["image-sync"].figures()["hit_rate"] > none
    assert (
        results["everything"].figures()["bytes_pulled"]
        > results["image-sync"].figures()["bytes_pulled"]
    )
    assert results["none"].figures()["bytes_prefetch"] == 0


def test_every_miss_has_a_cause(results: dict[str, RunResult]) -> None:
    for result in results.values():
        figures = result.figures()
        misses = sum(figures["misses"].values())
        assert misses == sum(1 for p in result.pods if not p.hit)
    # Nothing can know an image before its first pod but the oracle and a declared list.
    assert results["none"].figures()["misses"]["first use"] > 0


def test_image_sync_plans_with_the_real_planner(results: dict[str, RunResult]) -> None:
    figures = results["image-sync"].figures()
    assert figures["passes"] > 0 and figures["pulls_started"] > 0


def test_a_replay_gives_identical_results_twice(results: dict[str, RunResult]) -> None:
    again = replay.run(work(), "image-sync", config())
    assert again.figures() == results["image-sync"].figures()
    assert again.pods == results["image-sync"].pods

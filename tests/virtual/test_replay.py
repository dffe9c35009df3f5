"""Small replays end to end under every policy: sensible relations, identical repeats."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench.week import DAY, week_pods, week_scenario
from imagesync.config import Config, load_config
from imagesync.matching import parse_prefix
from simulator.virtual import replay
from simulator.virtual.cluster import VirtualCluster
from simulator.virtual.node import VirtualNode
from simulator.virtual.oracle import Oracle
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


class FreshOracle(Oracle):
    """The oracle deciding every time from scratch: nothing kept between decisions."""

    def _decide(self, node: VirtualNode) -> None:
        self._upcoming.clear()
        self._budgets.clear()
        self._chosen.clear()
        self._pinned_from.clear()
        super()._decide(node)


def test_the_oracle_decides_as_it_would_from_scratch() -> None:
    """Each pool's upcoming needs, each node's budget, targets and pins, kept while their
    inputs stay the same, give the run of an oracle that recomputes them at every decision
    (the week's first hours on tight disks: budgets full, image GC busy)."""
    setup = week_scenario("tight")
    specs = [spec for spec in week_pods() if spec.at < 0.4 * DAY]
    kept, fresh = (
        VirtualCluster(setup, specs, cls(specs, config()), 0.4 * DAY).run()
        for cls in (Oracle, FreshOracle)
    )
    assert kept.pods == fresh.pods
    assert kept.bytes_by_registry == fresh.bytes_by_registry

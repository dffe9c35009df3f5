"""NodeResourcesFit's scoring strategies, as kube-scheduler computes them."""

from __future__ import annotations

import pytest

from simulator.scheduling import schedule
from simulator.scoring import (
    DEFAULT_SCORING,
    GPU_BIN_PACKING,
    MOST_ALLOCATED,
    ScoringStrategy,
    parse_scoring_strategy,
    resource_fit_score,
)

GPU = "nvidia.com/gpu"
ALLOC = {"cpu": 96.0, "memory": 1024.0, GPU: 8.0}


def test_least_allocated_scores_what_stays_free_over_cpu_and_memory() -> None:
    free = {"cpu": 48.0, "memory": 512.0, GPU: 8.0}
    # cpu: (48 - 24) / 96 = 0.25, memory: (512 - 256) / 1024 = 0.25; the GPU is not scored.
    score = resource_fit_score(DEFAULT_SCORING, free, ALLOC, {"cpu": 24, "memory": 256, GPU: 8})
    assert score == pytest.approx(25.0)


def test_most_allocated_scores_what_would_be_requested_with_the_weights() -> None:
    free = {"cpu": 96.0, "memory": 1024.0, GPU: 4.0}
    asks = {"cpu": 24.0, "memory": 256.0, GPU: 4.0}
    # cpu 0.25 and memory 0.25 (weight 1 each), GPU 8/8 = 1.0 (weight 3): (0.5 + 3) / 5.
    assert resource_fit_score(GPU_BIN_PACKING, free, ALLOC, asks) == pytest.approx(70.0)
    # A pod that asks for no GPU is scored on cpu and memory only.
    cpu_only = resource_fit_score(GPU_BIN_PACKING, free, ALLOC, {"cpu": 24.0, "memory": 256.0})
    assert cpu_only == pytest.approx(25.0)
    # A node without the resource leaves it out too.
    assert resource_fit_score(GPU_BIN_PACKING, free, {"cpu": 96.0}, asks) == pytest.approx(25.0)


def test_a_scenario_names_the_strategy_like_the_plugin_arguments() -> None:
    parsed = parse_scoring_strategy(
        {"type": "MostAllocated", "resources": [{"name": GPU, "weight": 2}, {"name": "cpu"}]}
    )
    assert parsed == ScoringStrategy(MOST_ALLOCATED, ((GPU, 2), ("cpu", 1)))
    assert parse_scoring_strategy(None) == DEFAULT_SCORING
    assert parse_scoring_strategy({"type": "MostAllocated"}).resources == DEFAULT_SCORING.resources
    with pytest.raises(ValueError, match="at least 1"):
        parse_scoring_strategy({"resources": [{"name": "cpu", "weight": 0}]})


def _node(name: str) -> dict[str, object]:
    alloc = {"cpu": "16", "memory": "64Gi", "pods": "110"}
    return {"metadata": {"name": name, "labels": {}}, "spec": {}, "status": {"allocatable": alloc}}


def test_the_simulators_scheduler_takes_the_strategy() -> None:
    pod = {
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {}}]},
    }
    nodes = [_node("a"), _node("b")]
    used = {"b": {"cpu": 8.0, "memory": 32 * 2.0**30}}
    assert schedule(pod, nodes, used).node == "a"  # spread: the emptier node
    assert schedule(pod, nodes, used, GPU_BIN_PACKING).node == "b"  # packed: the fuller one

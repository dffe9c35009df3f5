"""Scenario files: the shipped ones load and hold what the design promises; errors name the place."""

from __future__ import annotations

import pytest

from simulator.registry import Resolved
from simulator.scenario import ScenarioError, builtin_scenarios, load_scenario, parse_scenario
from simulator.workload import pod_manifests


def test_shipped_scenarios_load() -> None:
    assert {"gpu-cluster", "lab", "scale-500"} <= set(builtin_scenarios())
    assert len(load_scenario("scale-500").initial_nodes()) == 500


def test_default_scenario_matches_the_contract() -> None:
    scenario = load_scenario()
    nodes = scenario.initial_nodes()
    cpu = [n for n in nodes if not n.gpus and n.arch == "amd64"]
    gpu = [n for n in nodes if n.gpus]
    assert len(cpu) >= 4 and len(gpu) >= 2
    assert all(n.all_labels()["nvidia.com/gpu.present"] == "true" for n in gpu)
    registries = scenario.build_registries(0.0)
    for image in (
        "harbor.example.internal/library/app:1.0",
        "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04",
        "docker.io/library/busybox:1.36",
        "ghcr.io/image-sync/image-sync:0.1.0",
    ):
        assert isinstance(registries.resolve(image, "amd64", 0.0), Resolved), image
    pytorch = registries.resolve("nvcr.io/nvidia/pytorch:24.08-py3", "amd64", 0.0)
    assert isinstance(pytorch, Resolved)
    assert pytorch.platform.compressed_size == 9_500_000_000
    assert pytorch.platform.disk_size == 20_400_000_000
    assert not isinstance(registries.resolve("nvcr.io/nvidia/other:1", "amd64", 0.0), Resolved)
    assert isinstance(
        registries.resolve("ghcr.io/image-sync/image-sync:0.1.0", "arm64", 0.0), Resolved
    )


def test_workload_pods_for_gpu_jobs_tolerate_the_gpu_taint() -> None:
    scenario = load_scenario("gpu-cluster")
    train = next(w for w in scenario.workload if w.name == "train")
    pods = pod_manifests(train)
    assert len(pods) == train.replicas
    spec = pods[0]["spec"]
    assert spec["restartPolicy"] == "Never"
    assert spec["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])


@pytest.mark.parametrize(
    ("data", "text"),
    [
        ({"nodes": [{"count": 1}]}, "nodes[0]"),
        ({"workload": [{"name": "x", "kind": "StatefulSet", "image": "a"}]}, "workload[0]"),
        ({"events": [{"at": 1, "action": "explode", "node": "a"}]}, "events[0]"),
        ({"events": [{"at": 1, "action": "join", "pool": "nope"}]}, "unknown pool"),
        ({"scheduler": {"scoringStrategy": {"type": "Packed"}}}, "MostAllocated"),
    ],
)
def test_errors_say_where(data: dict[str, object], text: str) -> None:
    with pytest.raises(ScenarioError, match=text.replace("[", r"\[").replace("]", r"\]")):
        parse_scenario(data, "bad")


def test_unknown_scenario_name() -> None:
    with pytest.raises(ScenarioError, match="shipped"):
        load_scenario("no-such-scenario")


def test_node_config_survives_the_trip_through_a_node_object() -> None:
    from dataclasses import replace

    from simulator.imagestore import GCPolicy
    from simulator.nodes import config_from_node

    pool = load_scenario("gpu-cluster").pool("gpu")
    config = replace(
        pool.node(1), gc=GCPolicy(min_age=60.0, max_age=600.0, period=60.0, pressure_available=10.0)
    )
    back = config_from_node(config.manifest())
    assert back.gc == config.gc
    assert (back.gpus, back.disk, back.bandwidth, back.arch) == (
        config.gpus,
        config.disk,
        config.bandwidth,
        config.arch,
    )
    assert back.taints == config.taints
    assert back.preloaded_images == config.preloaded_images

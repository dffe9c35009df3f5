"""A private image prefetched with `imagePullSecrets` stays guarded whether or not the kubelets
check credentials (KEP-2535, `KubeletEnsureSecretPulledImages`): keepers carry the secret."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from simulator.cluster import SimCluster
from simulator.scenario import parse_scenario
from tests.prefetcher.conftest import (
    SPEED,
    Running,
    declare,
    install_image_sync,
    our_pods,
    report,
    sim_config,
    untyped,
)
from tests.waiting import wait_for

PRIVATE = "harbor.example.internal/private/model:1.0"
SECRET = "harbor-pull"


def scenario(gate: bool) -> Any:
    return parse_scenario(
        {
            "name": "private-registry",
            "speed": SPEED,
            "registries": [
                {
                    "host": "harbor.example.internal",
                    "bandwidth": "1GB/s",
                    "unauthorized": ["private"],
                    "pullSecrets": [SECRET],
                    "images": [
                        {"image": "private/model:1.0", "compressed": "20MB", "disk": "40MB"}
                    ],
                },
                {  # the image puller and keeper pods copy the sleeper from
                    "host": "ghcr.io",
                    "bandwidth": "1GB/s",
                    "images": [
                        {
                            "image": "image-sync/image-sync:0.1.0",
                            "compressed": "24MB",
                            "disk": "68MB",
                        }
                    ],
                },
            ],
            "nodes": [
                {"pool": "cpu", "count": 2, "ensureSecretPulledImages": gate, "disk": "50GB"}
            ],
        }
    )


def keepers_running(api: client.ApiClient) -> list[Any]:
    """Keeper pods whose every container runs."""
    return [
        pod
        for pod in our_pods(api)
        if pod.metadata.labels.get("app.kubernetes.io/component") == "keeper"
        and pod.status.container_statuses
        and all(c.state.running for c in pod.status.container_statuses)
    ]


@pytest.mark.parametrize("gate", [False, True], ids=["gate-off", "gate-on"])
def test_keepers_of_a_private_image_run_with_either_kubelet_setting(gate: bool) -> None:
    with SimCluster(scenario(gate), speed=SPEED) as sim:
        api = sim.api_client()
        install_image_sync(api)
        declare(api, PRIVATE)
        running = Running(sim)
        try:
            prefetcher = running.start(sim_config(image_pull_secrets=(SECRET,)))
            nodes = sim.node_names()
            wait_for(
                lambda: len(keepers_running(api)) == len(nodes),
                timeout=120,
                interval=0.5,
                what="a running keeper on every node",
            )
            for keeper in keepers_running(api):
                assert [s.name for s in keeper.spec.image_pull_secrets] == [SECRET]
            r = report(prefetcher)
            assert r["summary"]["coverage"] == 1.0
            assert all(n["images"][PRIVATE]["state"] == "present" for n in r["nodes"])
            # What the gate is for: another team's pod without the secret cannot run it.
            core = untyped(client.CoreV1Api(api))
            core.create_namespace({"metadata": {"name": "team-b"}})
            core.create_namespaced_pod(
                "team-b",
                {
                    "metadata": {"name": "stranger"},
                    "spec": {
                        "nodeName": nodes[0],
                        "containers": [{"name": "c", "image": PRIVATE, "imagePullPolicy": "Never"}],
                    },
                },
            )

            def stranger_state() -> Any:
                pod = core.read_namespaced_pod("stranger", "team-b")
                statuses = pod.status.container_statuses or []
                if not statuses:
                    return None
                state = statuses[0].state
                return "running" if state.running else (state.waiting and state.waiting.reason)

            expected = "ErrImageNeverPull" if gate else "running"
            wait_for(lambda: stranger_state() == expected, timeout=60, what=expected)
        finally:
            running.stop_all()
            api.close()

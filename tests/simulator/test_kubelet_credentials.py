"""KEP-2535 in the simulated kubelet: with `KubeletEnsureSecretPulledImages` an image pulled
with credentials is used only by pods that bring the same pull secret; without it, by all."""

from __future__ import annotations

from typing import Any

import pytest

from simulator.noderuntime import NodeRuntime
from simulator.nodes import NodeConfig, config_from_node
from simulator.registry import Registry, RegistrySet, catalog_image

T0 = 1_700_000_000.0
PRIVATE = "harbor.example.internal/private/model:1"
PUBLIC = "harbor.example.internal/library/app:1"
PRELOADED = "harbor.example.internal/private/pause:1"


def node(gate: bool) -> NodeRuntime:
    harbor = Registry(
        host="harbor.example.internal",
        bandwidth=1e9,
        latency=0.0,
        unauthorized=("private",),
        pull_secrets=("harbor-pull",),
    )
    for image in (PRIVATE, PUBLIC, PRELOADED):
        harbor.add(catalog_image(image, compressed="1MB", disk="2MB"))
    config = NodeConfig(name="n1", ensure_secret_pulled_images=gate, preloaded_images=(PRELOADED,))
    return NodeRuntime(config, RegistrySet([harbor], epoch=T0), T0)


def pod(
    name: str, image: str, *, namespace: str = "team-a", secret: str = "", policy: str = "Never"
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [{"name": "c", "image": image, "imagePullPolicy": policy}],
        "restartPolicy": "Always",
    }
    if secret:
        spec["imagePullSecrets"] = [{"name": secret}]
    return {
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
        "spec": spec,
    }


def state(runtime: NodeRuntime, name: str) -> tuple[str, str]:
    status = runtime.pod_status(runtime.pods[f"uid-{name}"])["containerStatuses"][0]
    [(kind, detail)] = status["state"].items()
    return kind, str(detail.get("reason", ""))


def pulled_with_credentials(gate: bool) -> NodeRuntime:
    """A node where a team-a pod pulled PRIVATE with team-a's secret harbor-pull."""
    runtime = node(gate)
    runtime.sync_pod(pod("puller", PRIVATE, secret="harbor-pull", policy="IfNotPresent"))
    runtime.sync_pod(pod("public", PUBLIC, policy="IfNotPresent"))
    for t in range(10):
        runtime.advance(T0 + t)
    assert state(runtime, "puller") == ("running", "")
    return runtime


def run(runtime: NodeRuntime, *pods: dict[str, Any], seconds: int = 10) -> None:
    """Hand the node `pods` now and let `seconds` pass."""
    start = runtime.now
    for p in pods:
        runtime.sync_pod(p, start)
    for t in range(1, seconds + 1):
        runtime.advance(start + t)


@pytest.mark.parametrize("gate", [False, True])
def test_the_same_secret_may_always_use_the_image(gate: bool) -> None:
    runtime = pulled_with_credentials(gate)
    run(runtime, pod("keeper", PRIVATE, secret="harbor-pull"))
    assert state(runtime, "keeper") == ("running", "")


def test_without_the_gate_any_pod_uses_a_present_image() -> None:
    runtime = pulled_with_credentials(gate=False)
    run(runtime, pod("stranger", PRIVATE), pod("elsewhere", PRIVATE, namespace="team-b"))
    assert state(runtime, "stranger") == ("running", "")
    assert state(runtime, "elsewhere") == ("running", "")


def test_with_the_gate_other_credentials_are_checked() -> None:
    runtime = pulled_with_credentials(gate=True)
    run(
        runtime,
        pod("stranger", PRIVATE),  # no secret, Never: refused
        # The same secret name in another namespace is another secret.
        pod("elsewhere", PRIVATE, namespace="team-b", secret="harbor-pull"),
        pod("tries", PRIVATE, policy="IfNotPresent"),  # pulls with no credentials: denied
    )
    assert state(runtime, "stranger") == ("waiting", "ErrImageNeverPull")
    message = runtime.pod_status(runtime.pods["uid-stranger"])["containerStatuses"][0]["state"][
        "waiting"
    ]["message"]
    assert "credentials" in message
    assert state(runtime, "elsewhere") == ("waiting", "ErrImageNeverPull")
    assert state(runtime, "tries")[1] in ("ErrImagePull", "ImagePullBackOff")


def test_with_the_gate_a_pod_that_can_pull_may_then_use_it() -> None:
    runtime = pulled_with_credentials(gate=True)
    # team-b brings a secret the registry accepts: its IfNotPresent pull succeeds (the image
    # is there, so only the check is made), and team-b's Never pods may use it from then on.
    run(
        runtime,
        pod("verify", PRIVATE, namespace="team-b", secret="harbor-pull", policy="IfNotPresent"),
    )
    assert state(runtime, "verify") == ("running", "")
    run(runtime, pod("after", PRIVATE, namespace="team-b", secret="harbor-pull"))
    assert state(runtime, "after") == ("running", "")


def test_with_the_gate_public_and_preloaded_images_are_every_pods() -> None:
    runtime = pulled_with_credentials(gate=True)
    run(runtime, pod("public-never", PUBLIC), pod("preloaded", PRELOADED))
    assert state(runtime, "public-never") == ("running", "")
    assert state(runtime, "preloaded") == ("running", "")


def test_the_gate_travels_with_the_node_object() -> None:
    for gate in (False, True):
        config = NodeConfig(name="n1", ensure_secret_pulled_images=gate)
        assert config_from_node(config.manifest()).ensure_secret_pulled_images is gate

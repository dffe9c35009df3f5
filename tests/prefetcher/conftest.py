"""Fixtures for the prefetcher's runtime tests: a simulated API server, clients, waiting helpers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "manifests" / "base" / "crd-cachedimages.yaml"
NAMESPACE = "image-sync"
POD_NAMESPACE = "image-sync-cache"  # where puller and keeper pods run (names.POD_NAMESPACE_DEFAULT)


class ScaledClock:
    """The prefetcher's Clock over a simulator clock: waits take `seconds / speed` of wall time."""

    def __init__(self, sim_clock: Any) -> None:
        self.sim = sim_clock

    def now(self) -> float:
        return float(self.sim.now())

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.wait(max(0.0, float(self.sim.wall_seconds(seconds))))

    def monotonic(self) -> float:
        return float(self.sim.now())


def untyped(api: Any) -> Any:
    """A kubernetes API object as Any: tests send plain dict bodies, which the client accepts."""
    return api


def api_client_for(url: str) -> client.ApiClient:
    configuration = client.Configuration()
    configuration.host = url
    configuration.api_key = {"BearerToken": "image-sync-sim"}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    return client.ApiClient(configuration)


def install_crd(api: client.ApiClient) -> None:
    body = yaml.safe_load(CRD.read_text())
    untyped(client.ApiextensionsV1Api(api)).create_custom_resource_definition(body)


def ensure_namespace(api: client.ApiClient, name: str = NAMESPACE) -> None:
    core = untyped(client.CoreV1Api(api))
    try:
        core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    except client.exceptions.ApiException as exc:
        if exc.status != 409:
            raise


@pytest.fixture
def api_server() -> Iterator[Any]:
    """A bare simulated API server (no kubelets) with the CRD and our namespace."""
    from simulator.apiserver import ApiServer

    server = ApiServer(history_size=100, bookmark_interval=0.5)
    server.start()
    api = api_client_for(server.url)
    install_crd(api)
    ensure_namespace(api)
    try:
        yield server
    finally:
        api.close()
        server.stop()


@pytest.fixture
def api(api_server: Any) -> Iterator[client.ApiClient]:
    api = api_client_for(api_server.url)
    try:
        yield api
    finally:
        api.close()


# --- the simulated cluster with a prefetcher -----------------------------------------------

PRIORITY_CLASS = ROOT / "manifests" / "base" / "priorityclass.yaml"
SPEED = 60.0  # one wall second is one simulated minute
SMALL = "harbor.example.internal/library/app:1.0"
BUSYBOX = "docker.io/library/busybox:1.36"
CUDA = "nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04"
GPU_SELECTOR = {"nvidia.com/gpu.present": "true"}


def sim_config(**overrides: Any) -> Any:
    """The prefetcher's Config for the simulator: the scenario's registries, lease timings in
    simulated seconds that leave wall-clock room on a busy machine."""
    import dataclasses

    from imagesync.config import load_config

    base = load_config(
        environ={
            "IMAGE_SYNC_REGISTRIES": "harbor.example.internal,nvcr.io/nvidia,docker.io/library",
            "IMAGE_SYNC_NAMESPACE": NAMESPACE,
        }
    )
    settings: dict[str, Any] = {
        "lease_duration": 600.0,
        "lease_renew_deadline": 400.0,
        "lease_retry_period": 30.0,
        "pass_coalesce": 5.0,
        "pull_backoff_base": 120.0,
    }
    settings.update(overrides)
    return dataclasses.replace(base, **settings)


def install_image_sync(api: client.ApiClient) -> None:
    """What `kubectl apply -k manifests/base` would give the prefetcher: CRD, namespaces, PriorityClass."""
    install_crd(api)
    ensure_namespace(api)
    ensure_namespace(api, POD_NAMESPACE)
    untyped(client.SchedulingV1Api(api)).create_priority_class(
        yaml.safe_load(PRIORITY_CLASS.read_text())
    )


def bound_gpu_pod(name: str, image: str, node: str) -> dict[str, Any]:
    """A workload pod in `default` bound to `node` (as the scheduler would bind it) that
    runs `image`, tolerating the GPU taint."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "main", "image": image, "imagePullPolicy": "IfNotPresent"}],
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
        },
    }


def declare(api: client.ApiClient, image: str, node_selector: dict[str, str] | None = None) -> str:
    """Apply a Declared CachedImage, as a user would; returns its name."""
    from imagesync.cachedimage import object_name

    spec: dict[str, Any] = {"image": image, "source": "Declared"}
    if node_selector:
        spec["nodeSelector"] = node_selector
    name = object_name(image)
    untyped(client.CustomObjectsApi(api)).create_cluster_custom_object(
        "image-sync.io",
        "v1alpha1",
        "cachedimages",
        {
            "apiVersion": "image-sync.io/v1alpha1",
            "kind": "CachedImage",
            "metadata": {"name": name},
            "spec": spec,
        },
    )
    return name


def our_pods(api: client.ApiClient) -> Any:
    return (
        untyped(client.CoreV1Api(api))
        .list_namespaced_pod(
            POD_NAMESPACE, label_selector="app.kubernetes.io/managed-by=image-sync"
        )
        .items
    )


@pytest.fixture
def sim() -> Iterator[Any]:
    """The default GPU scenario (4 CPU + 2 GPU nodes) with image-sync's objects installed."""
    from simulator.cluster import SimCluster

    with SimCluster("gpu-cluster", speed=SPEED) as cluster:
        api = cluster.api_client()
        install_image_sync(api)
        api.close()
        yield cluster


class Running:
    """Prefetchers started by a test, stopped at its end (crashed ones included)."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.started: list[Any] = []

    def start(self, config: Any = None, *, identity: str = "prefetcher-0", **kwargs: Any) -> Any:
        from prefetcher.__main__ import Prefetcher
        from prefetcher.informer import InformerSettings

        prefetcher = Prefetcher(
            self.cluster.api_client(),
            config or sim_config(),
            clock=ScaledClock(self.cluster.clock),
            identity=identity,
            bind=("127.0.0.1", 0),
            informer_settings=InformerSettings(
                watch_timeout=30, backoff_initial=0.1, backoff_max=2.0
            ),
            **kwargs,
        )
        prefetcher.start()
        self.started.append(prefetcher)
        return prefetcher

    def stop_all(self) -> None:
        for prefetcher in self.started:
            prefetcher.stop()


@pytest.fixture
def prefetchers(sim: Any) -> Iterator[Running]:
    running = Running(sim)
    try:
        yield running
    finally:
        running.stop_all()


def report(prefetcher: Any) -> dict[str, Any]:
    """GET /report from the prefetcher's own HTTP server."""
    import requests

    response = requests.get(f"http://127.0.0.1:{prefetcher.server.port}/report", timeout=30)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


class StepClock:
    """Clock time that moves only when the test moves it."""

    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def now(self) -> float:
        return self.t

    def wait(self, event: threading.Event, seconds: float) -> bool:
        return event.is_set()

    def monotonic(self) -> float:
        return self.t

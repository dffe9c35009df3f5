"""`SimCluster`: the whole simulated cluster in one object, for tests, the demo and benchmarks.

    with SimCluster("gpu-cluster", speed=120) as cluster:
        core = kubernetes.client.CoreV1Api(cluster.api_client())
        cluster.wait_nodes_ready()
        ...
        cluster.image_store("gpu-1").has("nvcr.io/nvidia/pytorch:24.08-py3")

It starts the API server, the scheduler, the kubelets and the registries of a scenario,
creates the scenario's nodes, and writes a kubeconfig for kubectl and other processes.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from kubernetes import client

from simulator.apiserver.server import ApiServer
from simulator.clock import SimClock
from simulator.imagestore import ImageStore
from simulator.informer import Informers
from simulator.kubelet import KubeletSet
from simulator.nodes import NodeConfig
from simulator.rawapi import call
from simulator.registry import RegistrySet
from simulator.registryserver import RegistryServers
from simulator.scenario import Scenario, load_scenario
from simulator.scheduler import Scheduler
from simulator.testing import kube_client
from simulator.workload import ClusterOps, WorkloadPlayer

T = TypeVar("T")


class SimCluster:
    """API server + scheduler + kubelets + registries, started from a Scenario (or its name)."""

    def __init__(
        self,
        scenario: Scenario | str | None = None,
        *,
        speed: float | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        workdir: str | Path | None = None,
        scheduler: bool = True,
        events: bool = True,
        tick: float = 0.1,
        kubeconfig: str | Path | None = None,
        min_wall_heartbeat: float = 1.0,
        node_status_every: float = 0.0,
        pod_status_every: float = 0.0,
    ) -> None:
        self.scenario = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
        self.clock = SimClock(speed if speed is not None else self.scenario.speed)
        self.host = host
        self.port = port
        self._workdir_obj: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._workdir_obj = tempfile.TemporaryDirectory(prefix="image-sync-sim-")
            workdir = self._workdir_obj.name
        self.workdir = Path(workdir)
        self.kubeconfig = Path(kubeconfig) if kubeconfig else self.workdir / "kubeconfig"
        self.with_scheduler = scheduler
        self.events = events
        self.tick = tick
        # Kubelet cadences (see KubeletSet): a large, accelerated cluster spaces out its
        # heartbeats and its node and pod status writes so the API server is not spent on them.
        self.min_wall_heartbeat = min_wall_heartbeat
        self.node_status_every = node_status_every
        self.pod_status_every = pod_status_every
        self.registries: RegistrySet = self.scenario.build_registries(self.clock.now())
        self._apiserver: ApiServer | None = None
        self._ops: ClusterOps | None = None
        self.kubelets: KubeletSet | None = None
        self.scheduler: Scheduler | None = None
        self.player: WorkloadPlayer | None = None
        self._api: client.ApiClient | None = None
        self._informers: Informers | None = None
        self._next_index: dict[str, int] = {}
        self._lock = threading.Lock()
        self._registry_servers: RegistryServers | None = None

    # -- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> SimCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def server(self) -> ApiServer:
        """The running API server (fault injection, service mapping for webhooks)."""
        if self._apiserver is None:
            raise RuntimeError("the simulated cluster is not running")
        return self._apiserver

    @property
    def ops(self) -> ClusterOps:
        """Node and pod changes through the API."""
        if self._ops is None:
            raise RuntimeError("the simulated cluster is not running")
        return self._ops

    def start(self, *, wait_ready: bool = True, timeout: float = 60.0) -> None:
        # One clock for the whole cluster: the API server stamps metadata (creation,
        # deletion) in the same simulated time as the kubelets stamp container times.
        self._apiserver = ApiServer(self.host, self.port, clock=self.clock.now)
        self._apiserver.start()
        self._apiserver.write_kubeconfig(str(self.kubeconfig))
        self._api = self.api_client()
        self._ops = ClusterOps(self._api)
        self.ops.ensure_namespace("default")
        for config in self.scenario.initial_nodes():
            self._create_node(config)
        self._informers = Informers(self._api)
        self.kubelets = KubeletSet(
            self._api,
            self.clock,
            self.registries,
            informers=self._informers,
            tick=self.tick,
            events=self.events,
            min_wall_heartbeat=self.min_wall_heartbeat,
            node_status_every=self.node_status_every,
            pod_status_every=self.pod_status_every,
        )
        self.kubelets.start()
        if self.with_scheduler:
            self.scheduler = Scheduler(
                self._api,
                self.clock,
                informers=self._informers,
                tick=self.tick,
                events=self.events,
                scoring=self.scenario.scoring,
            )
            self.scheduler.start()
        if wait_ready:
            self.wait_nodes_ready(timeout=timeout)

    def serve_registries(self) -> dict[str, str]:
        """Serve the registries' distribution API (`/v2/...`) over HTTP on loopback, one port
        each, until the cluster stops; registry host → base URL."""
        if self._registry_servers is None:
            self._registry_servers = RegistryServers(self.registries, self.clock.now, self.host)
            self._registry_servers.start()
        return dict(self._registry_servers.urls)

    def stop(self) -> None:
        if self._registry_servers is not None:
            self._registry_servers.stop()
            self._registry_servers = None
        for part in (self.player, self.scheduler, self.kubelets):
            if part is not None:
                part.stop()
        if self._informers is not None:
            self._informers.stop()
        if self._apiserver is not None:
            self._apiserver.stop()
            self._apiserver = None
        if self._workdir_obj is not None:
            self._workdir_obj.cleanup()
            self._workdir_obj = None

    # -- access ----------------------------------------------------------------------
    def api_client(self) -> client.ApiClient:
        """A fresh `kubernetes` ApiClient for this cluster."""
        return kube_client(self.server)

    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self._api or self.api_client())

    def image_store(self, node: str) -> ImageStore:
        """What is really on `node`'s disk (not `status.images`, which is capped at 50)."""
        assert self.kubelets is not None
        return self.kubelets.image_store(node)

    def pod_image_waits(self) -> dict[str, float]:
        """`namespace/name` → simulated seconds each pod waited for its images."""
        assert self.kubelets is not None
        return self.kubelets.pod_image_waits()

    def summary(self) -> dict[str, Any]:
        assert self.kubelets is not None
        return self.kubelets.summary()

    def nodes(self) -> list[dict[str, Any]]:
        """Node objects as JSON."""
        items: list[dict[str, Any]] = call(self.core().list_node)["items"]
        return items

    def node_names(self) -> list[str]:
        return sorted(n["metadata"]["name"] for n in self.nodes())

    # -- changes ---------------------------------------------------------------------
    def _create_node(self, config: NodeConfig) -> None:
        pool = config.pool or config.name
        prefix, _, number = config.name.rpartition("-")
        if prefix and number.isdigit():
            with self._lock:
                self._next_index[pool] = max(self._next_index.get(pool, 1), int(number) + 1)
        self.ops.create_node(config)

    def add_node(
        self, pool: str | None = None, *, name: str | None = None, **overrides: Any
    ) -> str:
        """Add a node from a scenario pool (default: the first) with optional NodeConfig overrides."""
        node_pool = self.scenario.pool(pool) if pool else self.scenario.pools[0]
        with self._lock:
            index = self._next_index.get(node_pool.name, node_pool.count + 1)
            self._next_index[node_pool.name] = index + 1
        config = node_pool.node(index)
        if name:
            config = replace(config, name=name)
        if overrides:
            config = replace(config, **overrides)
        self.ops.create_node(config)
        return config.name

    def join(self, pool: str, count: int = 1) -> list[str]:
        return [self.add_node(pool) for _ in range(count)]

    def remove_node(self, name: str) -> None:
        self.ops.remove_node(name)

    def cordon(self, name: str, unschedulable: bool = True) -> None:
        self.ops.cordon(name, unschedulable)

    def set_not_ready(self, name: str, not_ready: bool = True) -> None:
        self.ops.set_not_ready(name, not_ready)

    def run_workload(self) -> WorkloadPlayer:
        """Start replaying the scenario's workload and node events from now (simulated time)."""
        assert self._api is not None
        self.player = WorkloadPlayer(self._api, self.clock, self.scenario, join=self.join)
        self.player.start()
        return self.player

    # -- waiting ---------------------------------------------------------------------
    def wait_for(
        self, condition: Callable[[], T], timeout: float = 60.0, interval: float = 0.05
    ) -> T:
        """Poll `condition` (wall seconds) until it returns something truthy; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            time.sleep(interval)

    def wait_nodes_ready(self, names: list[str] | None = None, timeout: float = 60.0) -> None:
        """Wait until the named nodes (default: all) report Ready=True."""

        def ready() -> bool:
            nodes = self.nodes()
            wanted = set(names) if names else {n["metadata"]["name"] for n in nodes}
            ok = {
                n["metadata"]["name"]
                for n in nodes
                if any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (n.get("status") or {}).get("conditions") or []
                )
            }
            return bool(wanted) and wanted <= ok

        self.wait_for(ready, timeout)

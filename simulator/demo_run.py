"""One measured replay on a fresh simulated cluster, with image-sync, a baseline or neither."""

from __future__ import annotations

import contextlib
import json
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simulator.clock import parse_time
from simulator.demo_harness import (
    NAMESPACE,
    TOOL_NAMESPACES,
    WEBHOOK_SERVICE,
    Children,
    Progress,
    accelerated_settings,
    child_env,
    console_script,
    free_port,
    install_image_sync,
    make_certs,
    wait_http,
)
from simulator.demo_results import (
    JoinedNode,
    PodRecord,
    RunResult,
    Transfer,
    is_managed_image,
    managed_prefixes,
    metered_registries,
    node_order,
    normalize_image,
    was_unschedulable,
)
from simulator.demo_scenarios import load_run_scenario, replay_length
from simulator.outcomes import (
    HIT_WAIT_SECONDS,
    PodOutcome,
    scheduling_lag,
)

if TYPE_CHECKING:
    from simulator.cluster import SimCluster


class Baseline:
    """A cache policy run inside this process instead of image-sync (see bench/evaluate.py)."""

    name = "baseline"

    def start(self, cluster: SimCluster, workload_start: float) -> None:
        """Called when the workload starts."""

    def stop(self) -> None:
        """Called when the run ends."""


@dataclass(frozen=True)
class RunOptions:
    scenario: str
    policy: str
    image_sync: bool
    speed: float
    settle: float = 600.0
    progress_every: float = 10.0
    config_file: Path | None = None


class Run:
    """One replay of a scenario on a fresh simulated cluster, with or without image-sync.

    `with Run(...) as run: result = run.replay()` — everything it started (cluster, webhook,
    prefetcher, baseline threads) is stopped on leaving the block, whatever happened.
    """

    def __init__(
        self,
        options: RunOptions,
        progress: Progress,
        workdir: Path,
        baseline: Baseline | None = None,
    ) -> None:
        self.options = options
        self.progress = progress
        self.workdir = workdir
        self.baseline = baseline
        self.children = Children(workdir)
        self.cluster: SimCluster | None = None
        self.report_url = ""
        self._stack = contextlib.ExitStack()
        self._records: dict[str, PodRecord] = {}
        self._images: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.workload_start = 0.0

    # -- lifecycle -----------------------------------------------------------------------
    def __enter__(self) -> Run:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._stack.close()

    def start(self) -> None:
        from simulator.cluster import SimCluster

        options = self.options
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.progress.step(
            f"[{options.policy}] simulated cluster up: scenario {options.scenario} at {options.speed:g}x"
        ):
            scenario = load_run_scenario(options.scenario)
            cluster = SimCluster(scenario, speed=options.speed, workdir=self.workdir / "sim")
            cluster.registries = metered_registries(cluster.registries, cluster.clock)
            self._stack.callback(cluster.stop)
            cluster.start(timeout=120)
            self.cluster = cluster
        self._stack.callback(self.children.stop)
        if options.image_sync:
            self._start_image_sync(cluster)

    def _start_image_sync(self, cluster: SimCluster) -> None:
        script = console_script()
        with self.progress.step("[image-sync] certificates from `image-sync certs`"):
            certs = make_certs(self.workdir / "certs", script)
        with self.progress.step(
            "[image-sync] CRD, PriorityClass and webhook configuration installed"
        ):
            install_image_sync(cluster.api_client(), certs / "ca.crt")
        settings = accelerated_settings(self.options.speed)
        # The scenario's registry bandwidths, as an admin who knows them configures them.
        settings["IMAGE_SYNC_REGISTRY_BANDWIDTH"] = json.dumps(
            cluster.scenario.registry_bandwidths()
        )
        env = child_env(cluster.kubeconfig, settings, self.options.config_file)
        webhook_port = free_port()
        cluster.server.map_service(NAMESPACE, WEBHOOK_SERVICE, "127.0.0.1", webhook_port)
        with self.progress.step(
            f"[image-sync] webhook (gunicorn, TLS) on https://127.0.0.1:{webhook_port}"
        ):
            argv = [
                script,
                "webhook",
                "--cert",
                str(certs / "tls.crt"),
                "--key",
                str(certs / "tls.key"),
            ]
            argv += ["--bind", f"127.0.0.1:{webhook_port}", "--workers", "2"]
            argv += ["--kubeconfig", str(cluster.kubeconfig)]
            self.children.start("webhook", argv, env)
            context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
            context.check_hostname = False
            wait_http(
                f"https://127.0.0.1:{webhook_port}/readyz",
                timeout=60,
                children=self.children,
                context=context,
            )
        report_port = free_port()
        self.report_url = f"http://127.0.0.1:{report_port}/"
        with self.progress.step(f"[image-sync] prefetcher, report on {self.report_url}"):
            argv = [script, "prefetcher", "--kubeconfig", str(cluster.kubeconfig)]
            argv += ["--bind", f"127.0.0.1:{report_port}"]
            self.children.start("prefetcher", argv, env)
            wait_http(self.report_url + "healthz", timeout=60, children=self.children)

    # -- the replay ----------------------------------------------------------------------
    def replay(self) -> RunResult:
        """Replay the workload and node events; returns once the last step has settled."""
        cluster = self.cluster
        assert cluster is not None
        options = self.options
        clock = cluster.clock
        scenario = cluster.scenario
        length = replay_length(scenario) + options.settle
        initial = set(cluster.node_names())
        self.workload_start = start = clock.now()
        offset = start - cluster.registries.epoch
        for registry in cluster.registries.registries.values():
            registry.outages = [(s + offset, e + offset) for s, e in registry.outages]
        recorder = threading.Thread(target=self._record, name="demo-recorder", daemon=True)
        recorder.start()
        self._stack.callback(recorder.join, 5)
        if self.baseline is not None:
            self.baseline.start(cluster, start)
            self._stack.callback(self.baseline.stop)
        player = cluster.run_workload()
        total_min = length / 60
        self.progress.say(
            f"[{options.policy}] replaying {len(scenario.workload)} workload steps and "
            f"{len(scenario.events)} node events over {total_min:.0f} simulated minutes"
        )
        next_report = self.progress.now() + options.progress_every
        while clock.now() - start < length:
            self.children.check()
            time.sleep(0.1)
            if self.progress.now() >= next_report:
                next_report += options.progress_every
                self.progress.say(f"[{options.policy}] {self._status(clock.now() - start, length)}")
        self.progress.say(f"[{options.policy}] replay done: {self._status(length, length)}")
        return self._result(cluster, initial, player.created, length)

    def _status(self, at: float, length: float) -> str:
        with self._lock:
            records = list(self._records.values())
        assert self.cluster is not None
        waits = self.cluster.pod_image_waits()
        started = sum(1 for r in records if f"{r.namespace}/{r.name}" in waits)
        pulls = self.cluster.summary().get("pulls_in_flight_or_queued", 0)
        return (
            f"simulated {at / 60:4.1f} of {length / 60:.0f} min: {len(records)} pods, "
            f"{started} started, {pulls} pulls in flight or queued"
        )

    def _record(self) -> None:
        """Note when each workload pod was bound, by watching pods (the API server's clock is
        wall time; ours is the simulated one)."""
        from kubernetes import client

        from simulator.informer import Informer

        assert self.cluster is not None
        clock = self.cluster.clock
        informer = Informer(
            client.CoreV1Api(self.cluster.api_client()).list_pod_for_all_namespaces,
            name="demo-pods",
        )
        informer.start()
        try:
            while not self._stop.is_set():
                informer.changed.wait(0.05)
                informer.changed.clear()
                now = clock.now() - self.workload_start
                for pod in informer.snapshot():
                    meta = pod.get("metadata") or {}
                    namespace = str(meta.get("namespace") or "")
                    if namespace in TOOL_NAMESPACES:
                        continue
                    key = f"{namespace}/{meta.get('name')}"
                    spec = pod.get("spec") or {}
                    with self._lock:
                        record = self._records.get(key)
                        if record is None:
                            record = self._records[key] = PodRecord(
                                namespace, str(meta.get("name"))
                            )
                            self._images[key] = [
                                str(c.get("image"))
                                for c in (spec.get("initContainers") or [])
                                + (spec.get("containers") or [])
                            ]
                        if record.created_at is None and meta.get("creationTimestamp"):
                            record.created_at = (
                                parse_time(str(meta["creationTimestamp"])) - self.workload_start
                            )
                        record.unschedulable = record.unschedulable or was_unschedulable(pod)
                        node = spec.get("nodeName")
                        if node and record.bound_at is None:
                            record.node = str(node)
                            record.bound_at = now
                        record.phase = str((pod.get("status") or {}).get("phase") or record.phase)
        finally:
            informer.stop()

    def _result(
        self, cluster: SimCluster, initial: set[str], created: int, length: float
    ) -> RunResult:
        start = self.workload_start
        waits = cluster.pod_image_waits()
        with self._lock:
            records = list(self._records.values())
            images = dict(self._images)
        outcomes = []
        for record in records:
            if record.bound_at is None:
                continue
            wait = waits.get(f"{record.namespace}/{record.name}")
            started = wait is not None
            if wait is None:
                wait = max(0.0, length - record.bound_at)  # still waiting: counted so far
            outcomes.append(
                PodOutcome(
                    name=f"{record.namespace}/{record.name}",
                    node=record.node,
                    bound_at=record.bound_at,
                    image_wait=wait,
                    hit=started and wait <= HIT_WAIT_SECONDS,
                    started=started,
                )
            )
        lag = scheduling_lag(
            [
                max(0.0, r.bound_at - r.created_at)
                for r in records
                if r.bound_at is not None and r.created_at is not None and not r.unschedulable
            ],
            pace=cluster.tick * self.options.speed,
        )
        metered: Any = cluster.registries
        transfers = [
            Transfer(host, s - start, (e if e is not None else cluster.clock.now()) - start, size)
            for host, s, e, size in list(getattr(metered, "transfers", []))
        ]
        assert cluster.kubelets is not None
        disk = 0
        pools: dict[str, str] = {}
        for node in cluster.nodes():
            labels = (node.get("metadata") or {}).get("labels") or {}
            pools[node["metadata"]["name"]] = str(labels.get("sim.image-sync.io/pool", ""))
        for name in pools:
            runtime = cluster.kubelets.runtime(name)
            if runtime is not None:
                disk += runtime.store.used - runtime.store.system_bytes
        prefixes = managed_prefixes()
        joined = []
        join_times = [
            e.at for e in cluster.scenario.events if e.action == "join" for _ in range(e.count)
        ]
        for index, name in enumerate(sorted(set(pools) - initial, key=node_order)):
            pool = pools[name]
            wanted = sorted(
                {
                    image
                    for record in records
                    if record.node and record.node != name and pools.get(record.node) == pool
                    for image in images.get(f"{record.namespace}/{record.name}", [])
                    if is_managed_image(image, prefixes)
                }
            )
            joined_at = join_times[index] if index < len(join_times) else 0.0
            node_joined = JoinedNode(name, pool, joined_at, wanted)
            runtime = cluster.kubelets.runtime(name)
            if runtime is not None:
                for image in wanted:
                    stored = runtime.store.find(normalize_image(image))
                    if stored is not None:
                        node_joined.arrivals[image] = stored.first_detected - start
            joined.append(node_joined)
        return RunResult(
            scenario=cluster.scenario.name,
            policy=self.options.policy,
            speed=self.options.speed,
            length=length,
            pods=outcomes,
            created=created,
            transfers=transfers,
            disk_used=disk,
            joined=joined,
            lag=lag,
        )

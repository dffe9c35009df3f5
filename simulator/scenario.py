"""Scenario files: the nodes, registries, images, workload and node events of a simulated cluster.

A scenario is YAML (format in docs/simulator.md); the shipped ones live in
`simulator/scenarios/` and are named by file stem (`gpu-cluster`, `lab`, `scale-500`).
Parsing is pure and checks every field once, with an error that says where it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from imagesync.quantities import parse_bandwidth, parse_duration, parse_size
from simulator.imagestore import GCPolicy
from simulator.nodes import NodeConfig
from simulator.registry import RegistrySet, registries_from_spec
from simulator.scoring import DEFAULT_SCORING, ScoringStrategy, parse_scoring_strategy

DEFAULT_SCENARIO = "gpu-cluster"


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message says where."""


@dataclass(frozen=True, slots=True)
class NodePool:
    """`count` nodes built from one template; names are `{prefix}-{n}` from 1."""

    name: str
    count: int
    template: NodeConfig
    prefix: str
    zones: tuple[str, ...]

    def node(self, index: int) -> NodeConfig:
        zone = self.zones[(index - 1) % len(self.zones)] if self.zones else self.template.zone
        return replace(self.template, name=f"{self.prefix}-{index}", zone=zone)


@dataclass(frozen=True, slots=True)
class WorkloadItem:
    """Pods created at `at` seconds: a Deployment-like set (Always) or Job-like pods (Never)."""

    at: float
    kind: str
    name: str
    namespace: str
    replicas: int
    images: tuple[str, ...]
    interval: float = 0.0
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    cpu: str = "100m"
    memory: str = "128Mi"
    gpus: int = 0
    run_seconds: float | None = None
    pull_policy: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NodeEvent:
    """A node lifecycle change at `at` seconds: join, remove, cordon, uncordon, notready, ready."""

    at: float
    action: str
    node: str = ""
    pool: str = ""
    count: int = 1


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    speed: float
    pools: tuple[NodePool, ...]
    registries: tuple[Mapping[str, Any], ...]
    workload: tuple[WorkloadItem, ...] = ()
    events: tuple[NodeEvent, ...] = ()
    # `scheduler.scoringStrategy`: how the scheduler's NodeResourcesFit scores nodes.
    scoring: ScoringStrategy = DEFAULT_SCORING
    # The virtual scheduler only: None, the first node by name among equal scores; a seed,
    # a draw among them, as kube-scheduler makes one (set per run, not read from a file).
    scheduler_seed: int | None = None

    def initial_nodes(self) -> list[NodeConfig]:
        return [pool.node(i) for pool in self.pools for i in range(1, pool.count + 1)]

    def pool(self, name: str) -> NodePool:
        for pool in self.pools:
            if pool.name == name:
                return pool
        raise ScenarioError(f"scenario {self.name!r} has no node pool {name!r}")

    def build_registries(self, epoch: float) -> RegistrySet:
        return registries_from_spec(self.registries, epoch=epoch)

    def with_kubelets(self, **settings: Any) -> Scenario:
        """The same scenario with `settings` (NodeConfig fields) on every pool's kubelets."""
        pools = tuple(replace(p, template=replace(p.template, **settings)) for p in self.pools)
        return replace(self, pools=pools)

    def registry_bandwidths(self) -> dict[str, float]:
        """Registry host → bandwidth (bytes per second), as image-sync's `registryBandwidth`."""
        return {
            host: registry.bandwidth
            for host, registry in sorted(self.build_registries(0.0).registries.items())
        }

    def images(self) -> list[str]:
        """Every image reference the registries serve."""
        return sorted(
            image.reference
            for registry in self.build_registries(0.0).registries.values()
            for image in registry.images.values()
        )


ACTIONS = ("join", "remove", "cordon", "uncordon", "notready", "ready")
KINDS = ("Deployment", "Job", "Pod")


def _pool(raw: Mapping[str, Any], where: str) -> NodePool:
    name = str(raw.get("pool") or raw.get("name") or "")
    if not name:
        raise ScenarioError(f"{where}: a node pool needs `pool` (its name)")
    gc_raw = raw.get("imageGC") or {}
    max_age = gc_raw.get("maxAge")
    gc = GCPolicy(
        high_threshold=float(gc_raw.get("highThresholdPercent", 85)),
        low_threshold=float(gc_raw.get("lowThresholdPercent", 80)),
        min_age=parse_duration(gc_raw.get("minAge", "2m")),
        max_age=parse_duration(max_age) if max_age else None,
    )
    zones_raw = raw.get("zones") or raw.get("zone") or "zone-a"
    zones = tuple(str(z) for z in zones_raw) if isinstance(zones_raw, list) else (str(zones_raw),)
    gpus = int(raw.get("gpus", 0))
    template = NodeConfig(
        name=name,
        arch=str(raw.get("arch", "amd64")),
        cpu=str(raw.get("cpu", "16")),
        memory=str(raw.get("memory", "64Gi")),
        gpus=gpus,
        gpu_product=str(raw.get("gpuProduct", "NVIDIA-A100-SXM4-80GB")),
        disk=parse_size(raw.get("disk", "200Gi")),
        system_disk_used=parse_size(raw.get("systemDiskUsed", "10Gi")),
        bandwidth=parse_bandwidth(raw.get("bandwidth", "1Gbps")),
        max_pods=int(raw.get("maxPods", 110)),
        zone=zones[0],
        instance_type=str(raw.get("instanceType", "sim.standard")),
        pool=name,
        labels={str(k): str(v) for k, v in (raw.get("labels") or {}).items()},
        taints=tuple(dict(t) for t in raw.get("taints") or ()),
        serialize_image_pulls=bool(raw.get("serializeImagePulls", True)),
        max_parallel_image_pulls=int(raw.get("maxParallelImagePulls", 0)),
        ensure_secret_pulled_images=bool(raw.get("ensureSecretPulledImages", False)),
        cancel_pull_on_delete=bool(raw.get("cancelPullOnDelete", False)),
        gc=gc,
        preloaded_images=tuple(str(i) for i in raw.get("preloadedImages") or ()),
    )
    return NodePool(
        name=name,
        count=int(raw.get("count", 1)),
        template=template,
        prefix=str(raw.get("namePrefix", name)),
        zones=zones,
    )


def _workload(raw: Mapping[str, Any], where: str) -> WorkloadItem:
    kind = str(raw.get("kind", "Deployment"))
    if kind not in KINDS:
        raise ScenarioError(f"{where}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
    images = raw.get("images") or ([raw["image"]] if raw.get("image") else [])
    if not images:
        raise ScenarioError(f"{where}: give `image` or `images`")
    run = raw.get("runSeconds")
    return WorkloadItem(
        at=parse_duration(raw.get("at", 0)),
        kind=kind,
        name=str(raw["name"]),
        namespace=str(raw.get("namespace", "default")),
        replicas=int(raw.get("replicas", 1)),
        images=tuple(str(i) for i in images),
        interval=parse_duration(raw.get("interval", 0)),
        node_selector={str(k): str(v) for k, v in (raw.get("nodeSelector") or {}).items()},
        tolerations=tuple(dict(t) for t in raw.get("tolerations") or ()),
        cpu=str(raw.get("cpu", "100m")),
        memory=str(raw.get("memory", "128Mi")),
        gpus=int(raw.get("gpus", 0)),
        run_seconds=parse_duration(run) if run is not None else None,
        pull_policy=raw.get("imagePullPolicy"),
        labels={str(k): str(v) for k, v in (raw.get("labels") or {}).items()},
        annotations={str(k): str(v) for k, v in (raw.get("annotations") or {}).items()},
    )


def _event(raw: Mapping[str, Any], where: str) -> NodeEvent:
    action = str(raw.get("action", ""))
    if action not in ACTIONS:
        raise ScenarioError(f"{where}: action must be one of {', '.join(ACTIONS)}, not {action!r}")
    event = NodeEvent(
        at=parse_duration(raw.get("at", 0)),
        action=action,
        node=str(raw.get("node", "")),
        pool=str(raw.get("pool", "")),
        count=int(raw.get("count", 1)),
    )
    if action == "join" and not event.pool:
        raise ScenarioError(f"{where}: join needs `pool`")
    if action != "join" and not event.node:
        raise ScenarioError(f"{where}: {action} needs `node`")
    return event


def parse_scenario(data: Mapping[str, Any], name: str = "scenario") -> Scenario:
    """A Scenario from parsed YAML."""
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{name}: expected a mapping at the top level")
    try:
        pools = tuple(
            _pool(p, f"{name}: nodes[{i}]") for i, p in enumerate(data.get("nodes") or [])
        )
        registries = tuple(dict(r) for r in data.get("registries") or [])
        registries_from_spec(registries)  # validate now, not at start-up of the kubelets
        workload = tuple(
            _workload(w, f"{name}: workload[{i}]") for i, w in enumerate(data.get("workload") or [])
        )
        events = tuple(
            _event(e, f"{name}: events[{i}]") for i, e in enumerate(data.get("events") or [])
        )
        scoring = parse_scoring_strategy((data.get("scheduler") or {}).get("scoringStrategy"))
    except ScenarioError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ScenarioError(f"{name}: {exc}") from None
    names = [p.name for p in pools]
    if len(set(names)) != len(names):
        raise ScenarioError(f"{name}: node pool names must be unique")
    for event in events:
        if event.action == "join" and event.pool not in names:
            raise ScenarioError(f"{name}: join names unknown pool {event.pool!r}")
    return Scenario(
        name=str(data.get("name", name)),
        description=str(data.get("description", "")),
        speed=float(data.get("speed", 1.0)),
        pools=pools,
        registries=registries,
        workload=tuple(sorted(workload, key=lambda w: w.at)),
        events=tuple(sorted(events, key=lambda e: e.at)),
        scoring=scoring,
    )


def builtin_scenarios() -> list[str]:
    folder = resources.files("simulator") / "scenarios"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_scenario(name_or_path: str | Path | None = None) -> Scenario:
    """Load a scenario by file path, or by the name of a shipped one (default `gpu-cluster`)."""
    target = str(name_or_path or DEFAULT_SCENARIO)
    path = Path(target)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.exists():
            raise ScenarioError(f"scenario file {target} does not exist")
        text = path.read_text()
        name = path.stem
    else:
        resource = resources.files("simulator") / "scenarios" / f"{target}.yaml"
        if not resource.is_file():
            raise ScenarioError(
                f"no scenario named {target!r}; shipped: {', '.join(builtin_scenarios())}"
            )
        text = resource.read_text()
        name = target
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{name}: not valid YAML: {exc}") from None
    return parse_scenario(data, name)


def read_scenario_file(path: Path) -> dict[str, Any]:
    """A scenario file as data; `extends: NAME` takes a shipped scenario and changes some keys
    (the evaluation's scenarios vary only the workload and events)."""
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise ScenarioError(f"{path}: expected a mapping at the top level")
    data: dict[str, Any] = loaded
    base_name = data.pop("extends", None)
    if base_name:
        base = resources.files("simulator") / "scenarios" / f"{base_name}.yaml"
        if not base.is_file():
            raise ScenarioError(f"{path}: extends unknown scenario {base_name!r}")
        merged: dict[str, Any] = yaml.safe_load(base.read_text())
        merged.update(data)
        data = merged
    return data

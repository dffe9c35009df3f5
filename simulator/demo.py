"""`image-sync demo`: the whole system on the simulated cluster, measured against itself without it.

The demo is the proof a newcomer can run in two minutes: the same GPU-cluster scenario is
replayed twice on the simulator's accelerated clock — once as a plain cluster, once with the
real webhook (gunicorn over TLS, certificates from `image-sync certs`) and the real
prefetcher, both started through the console script exactly as an operator would — and the
summary compares how long pods waited for their images. The building blocks (child
processes, the install into the simulated API server, one measured run) are shared with
`bench/evaluate.py`, which adds the baseline policies.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import yaml

from imagesync.names import POD_NAMESPACE_DEFAULT
from simulator.clock import parse_time
from simulator.outcomes import (
    HIT_WAIT_SECONDS,
    Interval,
    PodOutcome,
    SchedulingLag,
    fmt_bytes,
    fmt_seconds,
    fmt_share,
    hit_rate,
    peak_concurrency,
    percentile,
    scheduling_lag,
    time_to_warm,
)

if TYPE_CHECKING:
    from simulator.cluster import SimCluster
    from simulator.registry import RegistrySet
    from simulator.scenario import Scenario

JSON = dict[str, Any]
Monotonic = Callable[[], float]

WEBHOOK_SERVICE = "image-sync-webhook"
NAMESPACE = "image-sync"
MANAGED_REGISTRIES = "harbor.example.internal,nvcr.io/nvidia"
# Namespaces whose pods are infrastructure, not workload, in every measurement.
TOOL_NAMESPACES = frozenset(
    {NAMESPACE, POD_NAMESPACE_DEFAULT, "kube-system", "kube-node-lease", "cache-baseline"}
)


def repo_root() -> Path:
    """The checkout the package runs from: manifests/ and the console script live beside it."""
    return Path(__file__).resolve().parent.parent


def console_script() -> str:
    """The `image-sync` console script of this environment, so children run the same code."""
    beside = Path(sys.executable).parent / "image-sync"
    if beside.exists():
        return str(beside)
    found = shutil.which("image-sync")
    if found is None:
        raise DemoError("the image-sync console script is not installed (run `make install`)")
    return found


class DemoError(RuntimeError):
    """A step of the demo that failed; the message says which and where its log is."""


# -- progress ---------------------------------------------------------------------------


class Progress:
    """One line per step, prefixed with the wall time since the demo started."""

    def __init__(self, out: TextIO, clock: Monotonic) -> None:
        self._out = out
        self._clock = clock
        self._start = clock()
        self._lock = threading.Lock()

    def now(self) -> float:
        return self._clock()

    def elapsed(self) -> float:
        return self._clock() - self._start

    def say(self, text: str) -> None:
        with self._lock:
            self._out.write(f"[{self.elapsed():6.1f}s] {text}\n")
            self._out.flush()

    @contextlib.contextmanager
    def step(self, text: str) -> Iterator[None]:
        """Print `text (N s)` once the step has finished; a failure propagates unprinted."""
        began = self._clock()
        yield
        self.say(f"{text} ({self._clock() - began:.1f} s)")


# -- child processes ---------------------------------------------------------------------


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path


class Children:
    """The processes one run starts; all of them (and their workers) end with the run.

    Each child gets its own session so a Ctrl-C in the terminal reaches only the demo, which
    then stops them in order; the whole process group is signalled so gunicorn's workers go too.
    """

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.children: list[Child] = []

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> Child:
        log_path = self.logdir / f"{name}.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env),
                start_new_session=True,
            )
        child = Child(name, process, log_path)
        self.children.append(child)
        return child

    def check(self) -> None:
        """Raise if a child has died: a run without its webhook or prefetcher measures nothing."""
        for child in self.children:
            code = child.process.poll()
            if code is not None:
                raise DemoError(
                    f"{child.name} exited with status {code}; last lines of {child.log_path}:\n"
                    + tail(child.log_path)
                )

    def stop(self, grace: float = 8.0) -> None:
        for child in reversed(self.children):
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in reversed(self.children):
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait(timeout=5)
        self.children.clear()


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def free_port() -> int:
    """A free loopback port (the kernel's pick), for a child that needs one before it starts."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(
    url: str,
    *,
    timeout: float,
    children: Children,
    context: ssl.SSLContext | None = None,
) -> None:
    """Poll `url` until it answers 200, failing early when a child died."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        children.check()
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as answer:
                if answer.status == 200:
                    return
                last = f"HTTP {answer.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (OSError, ssl.SSLError) as exc:
            last = str(exc)
        time.sleep(0.2)
    raise DemoError(f"{url} did not become ready in {timeout:.0f} s ({last})")


def child_env(
    kubeconfig: Path, extra: Mapping[str, str], config_file: Path | None = None
) -> dict[str, str]:
    """The environment of a child: ours, pointed at the simulated cluster, no stray config.

    With `config_file` (the demo's `--config`) the children read it; otherwise they manage
    the scenario's Harbor and `nvcr.io/nvidia`.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGE_SYNC_")}
    env.update({"KUBECONFIG": str(kubeconfig), "POD_NAMESPACE": NAMESPACE, "PYTHONUNBUFFERED": "1"})
    if config_file is not None:
        env["IMAGE_SYNC_CONFIG"] = str(config_file)
    else:
        env["IMAGE_SYNC_REGISTRIES"] = MANAGED_REGISTRIES
    env.update(extra)
    return env


# -- image-sync into the simulated cluster ----------------------------------------------


def manifest_documents(name: str) -> list[JSON]:
    """The documents of one file of the kustomize base: the demo installs what users install."""
    path = repo_root() / "manifests" / "base" / name
    if not path.exists():
        raise DemoError(f"{path} is missing: the demo installs image-sync from manifests/base")
    return [doc for doc in yaml.safe_load_all(path.read_text()) if isinstance(doc, dict)]


def make_certs(out: Path, script: str) -> Path:
    """Run `image-sync certs` as an admin would; returns the directory with ca.crt, tls.*."""
    argv = [script, "certs", "--out", str(out), "--service", WEBHOOK_SERVICE]
    argv += ["--namespace", NAMESPACE, "--san", "localhost", "--san", "127.0.0.1"]
    result = subprocess.run(
        argv, capture_output=True, text=True, timeout=60, env=child_env(out / "none", {})
    )
    if result.returncode != 0 or not (out / "tls.crt").exists():
        raise DemoError(f"image-sync certs failed ({result.returncode}): {result.stderr[-2000:]}")
    return out


def install_image_sync(api_client: Any, ca_file: Path) -> None:
    """Namespaces, CRD, PriorityClass, the MutatingWebhookConfiguration and the pod guard's
    ValidatingWebhookConfiguration (with their caBundle)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api_client)
    extensions = client.ApiextensionsV1Api(api_client)
    scheduling = client.SchedulingV1Api(api_client)
    admission = client.AdmissionregistrationV1Api(api_client)
    ca_bundle = base64.b64encode(ca_file.read_bytes()).decode()

    def create(call: Callable[..., Any], body: JSON) -> None:
        try:
            call(body, _preload_content=False)
        except ApiException as exc:
            if exc.status != 409:
                raise DemoError(
                    f"creating {body.get('kind')} {body['metadata']['name']}: HTTP {exc.status} "
                    f"{exc.reason}: {str(exc.body)[:300]}"
                ) from None

    for doc in manifest_documents("namespace.yaml") + manifest_documents("cache-namespace.yaml"):
        if doc.get("kind") == "Namespace":
            create(core.create_namespace, doc)
    for doc in manifest_documents("crd-cachedimages.yaml"):
        create(extensions.create_custom_resource_definition, doc)
    for doc in manifest_documents("priorityclass.yaml"):
        create(scheduling.create_priority_class, doc)
    for doc in manifest_documents("webhook-configuration.yaml"):
        if doc.get("kind") != "MutatingWebhookConfiguration":
            continue
        for hook in doc.get("webhooks") or []:
            hook.setdefault("clientConfig", {})["caBundle"] = ca_bundle
        create(admission.create_mutating_webhook_configuration, doc)
    for doc in manifest_documents("pod-guard.yaml"):
        for hook in doc.get("webhooks") or []:
            hook.setdefault("clientConfig", {})["caBundle"] = ca_bundle
        create(admission.create_validating_webhook_configuration, doc)


# -- scenarios -------------------------------------------------------------------------


def load_run_scenario(name_or_path: str) -> Scenario:
    """A shipped scenario by name, or a file; a file may say `extends: NAME` to reuse one's
    nodes and registries (the evaluation's scenarios vary only the workload and events)."""
    from importlib import resources

    from simulator.scenario import ScenarioError, load_scenario, parse_scenario

    path = Path(name_or_path)
    if not path.exists():
        return load_scenario(name_or_path)
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ScenarioError(f"{path}: expected a mapping at the top level")
    base_name = data.pop("extends", None)
    if base_name:
        base = resources.files("simulator") / "scenarios" / f"{base_name}.yaml"
        if not base.is_file():
            raise ScenarioError(f"{path}: extends unknown scenario {base_name!r}")
        merged = yaml.safe_load(base.read_text())
        merged.update(data)
        data = merged
    return parse_scenario(data, path.stem)


def scenario_extra(name_or_path: str, key: str) -> Any:
    """A key of a scenario file the simulator ignores (e.g. the evaluation's `staticList`)."""
    path = Path(name_or_path)
    if not path.exists():
        return None
    data = yaml.safe_load(path.read_text())
    return data.get(key) if isinstance(data, dict) else None


def replay_length(scenario: Scenario) -> float:
    """Simulated seconds from the workload's start to its last pod creation or node event."""
    ends = [item.at + max(0, item.replicas - 1) * item.interval for item in scenario.workload]
    ends += [event.at for event in scenario.events]
    return max(ends, default=0.0)


# -- measuring a run -------------------------------------------------------------------


@dataclass(frozen=True)
class Transfer:
    """One download from a registry (simulated seconds since the workload started)."""

    host: str
    start: float
    end: float
    size: int


def metered_registries(base: RegistrySet, clock: Any) -> RegistrySet:
    """The scenario's registries, recording every transfer: bytes and concurrency are
    registry-side figures, so they are measured where the simulated registry serves them."""
    from simulator.registry import RegistrySet as Base

    class Metered(Base):
        def __init__(self) -> None:
            super().__init__(base.registries.values(), epoch=base.epoch)
            self.transfers: list[tuple[str, float, float | None, int]] = []
            self._open: dict[str, list[int]] = {}
            self._last_size = 0

        def resolve(self, *args: Any, **kwargs: Any) -> Any:
            answer = super().resolve(*args, **kwargs)
            platform = getattr(answer, "platform", None)
            self._last_size = int(platform.compressed_size) if platform is not None else 0
            return answer

        def begin_transfer(self, host: str) -> None:
            super().begin_transfer(host)
            self.transfers.append((host, clock.now(), None, self._last_size))
            self._open.setdefault(host, []).append(len(self.transfers) - 1)

        def end_transfer(self, host: str) -> None:
            super().end_transfer(host)
            opened = self._open.get(host)
            if opened:
                index = opened.pop(0)
                host_, start, _, size = self.transfers[index]
                self.transfers[index] = (host_, start, clock.now(), size)

    return Metered()


@dataclass
class PodRecord:
    namespace: str
    name: str
    node: str = ""
    bound_at: float | None = None
    phase: str = "Pending"
    image_wait: float | None = None
    created_at: float | None = None  # the API server's creationTimestamp (simulated clock)
    unschedulable: bool = False  # the scheduler once found no room: its wait is legitimate


@dataclass
class JoinedNode:
    """A node that joined during the replay, and when each image it should hold arrived."""

    name: str
    pool: str
    joined_at: float
    wanted: list[str]
    arrivals: dict[str, float] = field(default_factory=dict)


@dataclass
class RunResult:
    """What one replay produced; times are simulated seconds since the workload started."""

    scenario: str
    policy: str
    speed: float
    length: float
    pods: list[PodOutcome]
    created: int
    transfers: list[Transfer]
    disk_used: int
    joined: list[JoinedNode]
    lag: SchedulingLag | None = None

    @property
    def started(self) -> int:
        return sum(1 for pod in self.pods if pod.started)

    @property
    def bytes_pulled(self) -> int:
        return sum(t.size for t in self.transfers)

    def waits(self) -> list[float]:
        return [pod.image_wait for pod in self.pods if pod.image_wait is not None]

    def details(self) -> JSON:
        """The figures plus every pod and transfer, for a closer look at one run."""
        return {
            **self.figures(),
            "pods": [
                {
                    "pod": pod.name,
                    "node": pod.node,
                    "bound_at": round(pod.bound_at, 1),
                    "image_wait": pod.image_wait,
                    "hit": pod.hit,
                }
                for pod in sorted(self.pods, key=lambda p: p.bound_at)
            ],
            "transfers": [
                [t.host, round(t.start, 1), round(t.end, 1), t.size] for t in self.transfers
            ],
        }

    def figures(self) -> JSON:
        """The headline numbers, for the summary, the evaluation table and tests."""
        waits = self.waits()
        warm = [
            time_to_warm(node.joined_at, node.arrivals.values(), len(node.wanted))
            for node in self.joined
        ]
        return {
            "scenario": self.scenario,
            "policy": self.policy,
            "pods_created": self.created,
            "sched_lag_p50": self.lag.p50 if self.lag else None,
            "sched_lag_p95": self.lag.p95 if self.lag else None,
            "sched_lag_bound": self.lag.bound if self.lag else None,
            "pods_bound": len(self.pods),
            "pods_started": self.started,
            "hit_rate": hit_rate(self.pods),
            "wait_p50": percentile(waits, 50),
            "wait_p95": percentile(waits, 95),
            "wait_p99": percentile(waits, 99),
            "bytes_pulled": self.bytes_pulled,
            "disk_used": self.disk_used,
            "peak_pulls": peak_concurrency(Interval(t.start, t.end) for t in self.transfers),
            "joined": [
                {
                    "node": node.name,
                    "wanted": len(node.wanted),
                    "present": len(node.arrivals),
                    "warm_seconds": seconds,
                }
                for node, seconds in zip(self.joined, warm, strict=True)
            ],
        }


def managed_prefixes() -> tuple[Any, ...]:
    from imagesync.matching import parse_prefix

    return tuple(parse_prefix(p) for p in MANAGED_REGISTRIES.split(","))


def is_managed_image(image: str, prefixes: Sequence[Any]) -> bool:
    from imagesync.matching import is_managed

    return is_managed(image, prefixes) is not None


def accelerated_settings(speed: float) -> dict[str, str]:
    """image-sync's time settings scaled to the simulated clock.

    The webhook and the prefetcher run on wall time while the cluster runs `speed` times
    faster; dividing their periods by the speed keeps every default as it would be on a real
    cluster (a 30 min sweep stays 30 simulated minutes). Reaction delays (the learner's flush,
    the planner's coalescing) are kept short so a second of wall time does not turn into a
    simulated minute of lag no real cluster would have.
    """

    def seconds(value: float) -> str:
        return f"{max(0.05, value / speed):.3f}s"

    return {
        "IMAGE_SYNC_SWEEP_INTERVAL": seconds(1800),
        "IMAGE_SYNC_PULL_BACKOFF_BASE": seconds(60),
        "IMAGE_SYNC_PULL_BACKOFF_MAX": seconds(6 * 3600),
        "IMAGE_SYNC_URGENT_WINDOW": seconds(3600),
        "IMAGE_SYNC_PASS_COALESCE": "0.1s",
        "IMAGE_SYNC_LEARN_FLUSH_INTERVAL": "0.2s",
    }


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
        env = child_env(
            cluster.kubeconfig, accelerated_settings(self.options.speed), self.options.config_file
        )
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
                        record.unschedulable = record.unschedulable or _unschedulable(pod)
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
        for index, name in enumerate(sorted(set(pools) - initial, key=_node_order)):
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
                    stored = runtime.store.find(_normalize(image))
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


def _unschedulable(pod: Mapping[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(
        c.get("type") == "PodScheduled" and c.get("reason") == "Unschedulable" for c in conditions
    )


def _normalize(image: str) -> str:
    from imagesync.reference import normalize

    return normalize(image)


def _node_order(name: str) -> tuple[str, int]:
    prefix, _, number = name.rpartition("-")
    return (prefix, int(number)) if number.isdigit() else (name, 0)


# -- the demo ----------------------------------------------------------------------------

DEFAULT_DEMO_SCENARIO = "gpu-day"
DEFAULT_SPEED = 60.0


def demo_scenario_path(name: str) -> str:
    """The demo's replay: the shipped gpu-cluster nodes and registries with a working day's
    workload (bench/scenarios/gpu-day.yaml); any other name or path is used as given."""
    candidate = repo_root() / "bench" / "scenarios" / f"{name}.yaml"
    return str(candidate) if candidate.exists() else name


def format_summary(without: RunResult, with_: RunResult, speed: float) -> str:
    """The demo's closing table: the same replay without and with image-sync."""
    a, b = without.figures(), with_.figures()

    def warm(figures: JSON) -> str:
        parts = []
        for node in figures["joined"]:
            seconds = node["warm_seconds"]
            if seconds is None:
                parts.append(
                    f"{node['node']}: not warm ({node['present']}/{node['wanted']} images)"
                )
            else:
                parts.append(f"{node['node']}: {fmt_seconds(seconds)} ({node['wanted']} images)")
        return "; ".join(parts) or "-"

    rows = [
        (
            "pods started",
            f"{a['pods_started']} of {a['pods_created']}",
            f"{b['pods_started']} of {b['pods_created']}",
        ),
        ("images already on the node", fmt_share(a["hit_rate"]), fmt_share(b["hit_rate"])),
        ("image wait p50", fmt_seconds(a["wait_p50"]), fmt_seconds(b["wait_p50"])),
        ("image wait p95", fmt_seconds(a["wait_p95"]), fmt_seconds(b["wait_p95"])),
        ("new node warm after", warm(a), warm(b)),
        (
            "bytes pulled from registries",
            fmt_bytes(a["bytes_pulled"]),
            fmt_bytes(b["bytes_pulled"]),
        ),
    ]
    width = max(len(r[0]) for r in rows)
    col = max(len("without image-sync"), *(len(r[1]) for r in rows))
    lines = [
        f"Summary: scenario {with_.scenario}, {with_.length / 60:.0f} simulated minutes at {speed:g}x, "
        "same workload twice",
        "",
        f"  {'':<{width}}  {'without image-sync':<{col}}  with image-sync",
    ]
    lines += [f"  {name:<{width}}  {left:<{col}}  {right}" for name, left, right in rows]
    for result in (without, with_):
        if result.lag is not None and result.lag.behind:
            lines += ["", "  WARNING " + result.lag.warning(result.policy)]
    return "\n".join(lines)


def run_demo(
    *,
    once: bool,
    scenario: str,
    speed: float,
    out: TextIO,
    summary_json: Path | None = None,
    workdir: Path | None = None,
    config_file: Path | None = None,
    clock: Monotonic = time.monotonic,
) -> int:
    """Both replays, the summary, then (unless `once`) the report until Ctrl-C."""
    progress = Progress(out, clock)
    scenario_path = demo_scenario_path(scenario)
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="image-sync-demo-"))
            )
        progress.say(f"image-sync demo: scenario {scenario}, clock {speed:g}x; logs in {workdir}")
        options = RunOptions(
            scenario=scenario_path, policy="without image-sync", image_sync=False, speed=speed
        )
        with Run(options, progress, workdir / "without") as run:
            without = run.replay()
        options = RunOptions(
            scenario=scenario_path,
            policy="with image-sync",
            image_sync=True,
            speed=speed,
            config_file=config_file,
        )
        run = stack.enter_context(Run(options, progress, workdir / "with"))
        with_ = run.replay()
        out.write("\n" + format_summary(without, with_, speed) + "\n\n")
        if summary_json is not None:
            summary_json.write_text(
                json.dumps(
                    {"without": without.details(), "with": with_.details()}, indent=1, default=str
                )
            )
        assert run.cluster is not None
        out.write(
            f"Prefetch report: {run.report_url}  (JSON: {run.report_url}report, metrics: {run.report_url}metrics)\n"
        )
        out.write(f"The cluster: kubectl --kubeconfig {run.cluster.kubeconfig} get pods -A\n")
        out.flush()
        if once:
            return 0
        out.write("Serving until Ctrl-C.\n")
        out.flush()
        while True:
            run.children.check()
            time.sleep(0.5)

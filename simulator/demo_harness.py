"""The processes a measured run starts (certs, webhook, prefetcher) and image-sync's install."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from imagesync.names import POD_NAMESPACE_DEFAULT

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

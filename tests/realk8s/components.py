"""image-sync's parts run against the real control plane as local processes: each component
with a token of its own ServiceAccount, so the RBAC in manifests/ authorizes every call."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from imagesync import names
from tests.realk8s.controlplane import ControlPlane, free_ports, kubectl_path
from tests.waiting import wait_for

IMAGE_SYNC = str(Path(sys.executable).with_name("image-sync"))
NAMESPACE = names.NAMESPACE_DEFAULT
WEBHOOK_ACCOUNT = "image-sync-webhook"
PREFETCHER_ACCOUNT = "image-sync-prefetcher"
# How the components log an API call the server refused (KubeError: "HTTP 403 Forbidden: ...").
FORBIDDEN = ("HTTP 403", "Forbidden")
REFUSED = (*FORBIDDEN, "HTTP 422", " is invalid")


def log_lines(log: str, markers: tuple[str, ...], start: int = 0) -> list[str]:
    """Lines of `log` from character `start` on that hold one of `markers`."""
    return [line for line in log[start:].splitlines() if any(m in line for m in markers)]


def kubectl(
    control_plane: ControlPlane,
    *args: str,
    kubeconfig: Path | None = None,
    stdin: str | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """kubectl against the control plane (admin unless `kubeconfig`); stderr without the
    version-skew warning of a newer kubectl."""
    result = subprocess.run(
        [kubectl_path(), "--kubeconfig", str(kubeconfig or control_plane.kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    stderr = "\n".join(
        line for line in result.stderr.splitlines() if "version difference" not in line
    )
    result = subprocess.CompletedProcess(result.args, result.returncode, result.stdout, stderr)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed:\n{stderr}")
    return result


def get_json(control_plane: ControlPlane, *args: str) -> Any:
    return json.loads(kubectl(control_plane, "get", *args, "-o", "json").stdout)


def token_kubeconfig(control_plane: ControlPlane, account: str, path: Path) -> Path:
    """A kubeconfig holding a fresh token of ServiceAccount `account` (TokenRequest API), as a
    pod of that ServiceAccount would be given."""
    token = kubectl(
        control_plane, "create", "token", account, "-n", NAMESPACE, "--duration=2h"
    ).stdout.strip()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "realk8s",
                "cluster": {
                    "server": control_plane.url,
                    "certificate-authority-data": base64.b64encode(
                        control_plane.ca_file.read_bytes()
                    ).decode(),
                },
            }
        ],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": "realk8s", "user": account}}],
        "current-context": account,
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def component_environment(config_file: Path, **overrides: str) -> dict[str, str]:
    """The environment of a pod of the Deployment: the ConfigMap's file, its namespace."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IMAGE_SYNC_", "KUBERNETES_", "PROMETHEUS_"))
    }
    env.pop("KUBECONFIG", None)
    env.update({"IMAGE_SYNC_CONFIG": str(config_file), "POD_NAMESPACE": NAMESPACE})
    env.update(overrides)
    return env


@dataclass
class Process:
    """A started command whose output goes to a log file."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_process(name: str, command: list[str], env: dict[str, str], log_dir: Path) -> Process:
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    return Process(name, process, log_path)


@dataclass
class Prefetcher:
    """`image-sync prefetcher` as a process with its report on a free port."""

    process: Process
    port: int
    identity: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> requests.Response | None:
        try:
            return requests.get(f"{self.url}{path}", timeout=10)
        except requests.RequestException:
            return None

    def report(self) -> dict[str, Any] | None:
        response = self.get("/report")
        if response is None or response.status_code != 200:
            return None
        report: dict[str, Any] = response.json()
        return report

    def is_leader(self) -> bool:
        response = self.get("/healthz")
        return response is not None and response.text.strip() == "leader"


# Lease timings short enough that a takeover fits in a fast test, long enough for a busy machine.
FAST_LEASE = {
    "IMAGE_SYNC_LEASE_DURATION": "6s",
    "IMAGE_SYNC_LEASE_RENEW_DEADLINE": "4s",
    "IMAGE_SYNC_LEASE_RETRY_PERIOD": "1s",
    "IMAGE_SYNC_PASS_COALESCE": "1s",
}


def start_prefetcher(
    kubeconfig: Path, config_file: Path, log_dir: Path, identity: str, **env: str
) -> Prefetcher:
    [port] = free_ports(1)
    command = [
        IMAGE_SYNC,
        "prefetcher",
        "--kubeconfig",
        str(kubeconfig),
        "--bind",
        f"127.0.0.1:{port}",
        "--identity",
        identity,
    ]
    environment = component_environment(config_file, **{**FAST_LEASE, **env})
    process = start_process(f"prefetcher-{identity}", command, environment, log_dir)
    prefetcher = Prefetcher(process, port, identity)
    try:
        wait_for(
            lambda: prefetcher.get("/healthz") is not None or not process.alive(),
            timeout=90,
            what=f"prefetcher {identity} serving",
        )
        assert process.alive(), f"prefetcher {identity} exited:\n{process.log()}"
    except BaseException:
        process.stop()
        raise
    return prefetcher

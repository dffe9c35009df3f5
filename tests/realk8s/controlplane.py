"""A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager,
kube-scheduler) for one test session: found, started on free loopback ports, stopped."""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = Path(__file__).resolve().parent / "scripts"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
DEFAULT_BIN = ROOT.parent / "shared" / "realk8s" / "bin"
ASSETS_VARIABLE = "KUBEBUILDER_ASSETS"
REQUIRE_VARIABLE = "IMAGE_SYNC_REQUIRE_REALK8S"
HOW_TO_GET = (
    f"real control plane not found: set {ASSETS_VARIABLE} to a folder holding "
    f"{', '.join(BINARIES)} (Kubernetes 1.25+), or put them in {DEFAULT_BIN}"
)
PORT_VARIABLES = (
    "REALK8S_API_PORT",
    "REALK8S_ETCD_PORT",
    "REALK8S_ETCD_PEER_PORT",
    "REALK8S_KCM_PORT",
    "REALK8S_SCHEDULER_PORT",
)
START_TIMEOUT = 180.0


def find_binaries(environ: dict[str, str] | None = None) -> Path | None:
    """The folder of the control plane binaries: $KUBEBUILDER_ASSETS (envtest's convention),
    else ../shared/realk8s/bin beside the checkout; None when neither has them all."""
    env = os.environ if environ is None else environ
    assets = env.get(ASSETS_VARIABLE)
    folder = Path(assets) if assets else DEFAULT_BIN
    if all(os.access(folder / name, os.X_OK) for name in BINARIES):
        return folder.resolve()
    return None


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports nothing listens on right now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class ControlPlane:
    """One control plane: its state folder (PKI, etcd data, logs) and its ports."""

    home: Path
    state: Path
    ports: dict[str, int]
    apiserver_args: str = ""

    @classmethod
    def create(cls, binaries: Path, workdir: Path) -> ControlPlane:
        """Lay out `workdir`: the scripts beside a `bin` link to `binaries` (the scripts find
        their binaries in `bin/` next to themselves) and an empty state folder."""
        home = workdir / "realk8s"
        home.mkdir(parents=True)
        for script in ("start.sh", "stop.sh", "running.sh"):
            (home / script).symlink_to(SCRIPTS / script)
        (home / "bin").symlink_to(binaries)
        state = workdir / "state"
        state.mkdir()
        return cls(
            home, state, dict(zip(PORT_VARIABLES, free_ports(len(PORT_VARIABLES)), strict=True))
        )

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (`system:masters`)."""
        return self.state / "kubeconfig"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.ports['REALK8S_API_PORT']}"

    @property
    def ca_file(self) -> Path:
        return self.state / "pki" / "ca.crt"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REALK8S_")}
        env.update({k: str(v) for k, v in self.ports.items()})
        env.update(
            {
                "REALK8S_STATE": str(self.state),
                "REALK8S_SCHEDULER": "1",
                "REALK8S_APISERVER_EXTRA_ARGS": self.apiserver_args,
            }
        )
        return env

    def _script(self, name: str, *args: str) -> None:
        result = subprocess.run(
            ["bash", str(self.home / name), *args],
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{name} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )

    def start(self) -> None:
        self._script("start.sh")

    def stop(self) -> None:
        self._script("stop.sh")

    def restart_apiserver(self, extra_args: str) -> None:
        """Restart only kube-apiserver with other flags (etcd keeps the cluster's state; the
        controllers reconnect): e.g. to turn an admission plugin on or off."""
        pid_file = self.state / "run" / "kube-apiserver.pid"
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGTERM)
        if not _wait_gone(pid, timeout=1.0):  # its graceful shutdown can take a minute
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid)
        self.apiserver_args = extra_args
        self.start()

    def compact_etcd(self) -> int:
        """Compact etcd up to its current revision (what the API server does every 5 minutes):
        a watch resumed from an older resourceVersion is then answered 410 Gone."""
        gateway = f"http://127.0.0.1:{self.ports['REALK8S_ETCD_PORT']}/v3/kv"
        key = base64.b64encode(b"/").decode()
        header = requests.post(f"{gateway}/range", json={"key": key}, timeout=10).json()["header"]
        revision = int(header["revision"])
        answer = requests.post(
            f"{gateway}/compaction", json={"revision": revision, "physical": True}, timeout=30
        )
        answer.raise_for_status()
        return revision


def _wait_gone(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        stat = Path(f"/proc/{pid}/stat")
        if stat.exists() and stat.read_text().split()[2] == "Z":
            return True
        time.sleep(0.1)
    return False


def kubectl_path() -> str:
    """kubectl from PATH, else the one `make install` put beside this interpreter."""
    path = shutil.which("kubectl") or shutil.which("kubectl", path=str(Path(sys.executable).parent))
    if path is None:
        raise RuntimeError("kubectl is not installed (make install puts one in .venv/bin)")
    return path

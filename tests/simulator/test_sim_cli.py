"""`image-sync sim` as a subprocess: starts, writes a kubeconfig, kubectl works, then it stops."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.skips import OPTIONAL
from tests.waiting import wait_for


def _kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.skipif(
    shutil.which("kubectl") is None, reason=f"{OPTIONAL}kubectl: run scripts/ensure-kubectl"
)
def test_sim_command_serves_a_cluster_kubectl_can_use(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    image_sync = Path(sys.executable).parent / "image-sync"
    process = subprocess.Popen(
        [
            str(image_sync),
            "sim",
            "--bind",
            "127.0.0.1:0",
            "--kubeconfig-out",
            str(kubeconfig),
            "--speed",
            "60",
            "--no-workload",
            "--serve-registries",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "IMAGE_SYNC_CONFIG": ""},
    )
    try:
        wait_for(kubeconfig.exists, timeout=60)

        def ready_nodes() -> list[str]:
            result = _kubectl(kubeconfig, "get", "nodes", "--no-headers")
            return [line for line in result.stdout.splitlines() if " Ready " in line]

        wait_for(lambda: len(ready_nodes()) >= 6, timeout=60)
        assert len(ready_nodes()) == 6
        added = subprocess.run(
            [str(image_sync), "sim", "node", "add", "gpu", "--kubeconfig", str(kubeconfig)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert added.returncode == 0, added.stderr
        assert "gpu-3" in added.stdout
        wait_for(lambda: any(line.startswith("gpu-3 ") for line in ready_nodes()), timeout=60)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            out, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
    assert process.returncode == 0
    assert "kubectl --kubeconfig" in out
    assert "registry harbor.example.internal serves its API at http://127.0.0.1:" in out


def test_attach_runs_kubelets_against_an_existing_api_server(tmp_path: Path) -> None:
    from kubernetes import client

    from simulator.testing import kube_client, running_apiserver

    kubeconfig = tmp_path / "kubeconfig"
    image_sync = Path(sys.executable).parent / "image-sync"
    with running_apiserver() as server:
        server.write_kubeconfig(kubeconfig)
        process = subprocess.Popen(
            [
                str(image_sync),
                "sim",
                "--attach",
                str(kubeconfig),
                "--scenario",
                "lab",
                "--no-workload",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "IMAGE_SYNC_CONFIG": ""},
        )
        try:
            core = client.CoreV1Api(kube_client(server))

            def ready() -> set[str]:
                return {
                    str(node.metadata.name)
                    for node in core.list_node().items
                    if node.metadata
                    and node.status
                    and any(
                        c.type == "Ready" and c.status == "True"
                        for c in node.status.conditions or []
                    )
                }

            wait_for(lambda: ready() == {"amd-1", "amd-2", "arm-1"}, timeout=60)
            cordon = subprocess.run(
                [
                    str(image_sync),
                    "sim",
                    "node",
                    "cordon",
                    "arm-1",
                    "--kubeconfig",
                    str(kubeconfig),
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert cordon.returncode == 0, cordon.stderr
            node = core.read_node("arm-1")
            assert node.spec is not None and node.spec.unschedulable is True
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        assert process.returncode == 0


def test_sim_logs_json_lines_on_request(tmp_path: Path) -> None:
    from tests.jsonlogs import records

    kubeconfig = tmp_path / "kubeconfig"
    log_path = tmp_path / "stderr"
    image_sync = Path(sys.executable).parent / "image-sync"
    with log_path.open("w") as stderr:
        process = subprocess.Popen(
            [
                str(image_sync),
                "sim",
                "--log-format",
                "json",
                "--bind",
                "127.0.0.1:0",
                "--kubeconfig-out",
                str(kubeconfig),
                "--no-workload",
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, "IMAGE_SYNC_CONFIG": ""},
        )
        try:
            wait_for(lambda: "serving on" in log_path.read_text(), timeout=60)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    assert process.returncode == 0
    lines = records(log_path.read_text())
    [serving] = [r for r in lines if "url" in r]
    assert serving["logger"] == "simulator.cli"
    assert serving["scenario"] == "gpu-cluster" and serving["nodes"] == 6
    assert serving["url"].startswith("http://127.0.0.1:")
    assert lines[-1]["message"] == "stopping the simulated cluster"

"""`image-sync prefetcher` as a process: serves its endpoints, converges, sweeps on SIGHUP, stops
cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client

from tests.prefetcher.conftest import BUSYBOX, NAMESPACE, declare, install_image_sync, untyped
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def realtime_sim() -> Iterator[Any]:
    """The GPU scenario at real speed: a separate process uses the wall clock, like the cluster."""
    from simulator.cluster import SimCluster

    with SimCluster("gpu-cluster", speed=1.0) as cluster:
        api = cluster.api_client()
        install_image_sync(api)
        api.close()
        yield cluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_cli_serves_converges_and_hands_back_the_lease_on_sigterm(realtime_sim: Any) -> None:
    api = realtime_sim.api_client()
    declare(api, BUSYBOX)
    port = free_port()
    env = {
        **os.environ,
        "POD_NAMESPACE": NAMESPACE,
        "IMAGE_SYNC_REGISTRIES": "docker.io/library",
        "IMAGE_SYNC_LOG_LEVEL": "info",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imagesync.cli",
            "prefetcher",
            "--kubeconfig",
            str(realtime_sim.kubeconfig),
            "--bind",
            f"127.0.0.1:{port}",
            "--identity",
            "cli-test",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def coverage() -> Any:
            try:
                return (
                    requests.get(f"{base}/report", timeout=10).json()["summary"]["coverage"] == 1.0
                )
            except (requests.RequestException, ValueError):
                return False

        wait_for(coverage, timeout=180, interval=0.5, what="coverage through the CLI process")
        assert requests.get(f"{base}/healthz", timeout=10).text.strip() == "leader"
        page = requests.get(f"{base}/", timeout=10)
        assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
        assert BUSYBOX in page.text or "busybox" in page.text
        metrics = requests.get(f"{base}/metrics", timeout=10).text
        assert "image_sync_prefetcher_coverage_ratio 1.0" in metrics
        assert "image_sync_prefetcher_leader 1.0" in metrics
        for node in realtime_sim.node_names():
            assert realtime_sim.image_store(node).has(BUSYBOX), node

        # SIGHUP runs a sweep now, not at the next sweepInterval (30 minutes away).
        def last_sweep() -> float:
            for line in requests.get(f"{base}/metrics", timeout=10).text.splitlines():
                if line.startswith("image_sync_prefetcher_last_sweep_timestamp_seconds "):
                    return float(line.split()[1])
            return 0.0

        swept = last_sweep()
        process.send_signal(signal.SIGHUP)
        wait_for(lambda: last_sweep() > swept, timeout=60, interval=0.2, what="a sweep on SIGHUP")
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "shutting down" in output
    assert "received SIGHUP; sweeping now" in output
    lease = untyped(client.CoordinationV1Api(api)).read_namespaced_lease(
        "image-sync-prefetcher", NAMESPACE
    )
    assert not lease.spec.holder_identity, "a clean stop hands the Lease back"


def test_cli_logs_json_with_the_node_image_and_reason_of_a_failed_pull(
    realtime_sim: Any, tmp_path: Path
) -> None:
    from tests.jsonlogs import records

    missing = "docker.io/library/does-not-exist:1.0"
    api = realtime_sim.api_client()
    declare(api, missing, {"kubernetes.io/hostname": "cpu-1"})
    log_path = tmp_path / "prefetcher.log"
    env = {
        **os.environ,
        "POD_NAMESPACE": NAMESPACE,
        "IMAGE_SYNC_REGISTRIES": "docker.io/library",
        "IMAGE_SYNC_LOG_FORMAT": "text",  # the flag wins over the configuration
    }
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "imagesync.cli",
                "prefetcher",
                "--log-format",
                "json",
                "--kubeconfig",
                str(realtime_sim.kubeconfig),
                "--bind",
                f"127.0.0.1:{free_port()}",
            ],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for(
                lambda: missing in log_path.read_text(),
                timeout=120,
                interval=0.5,
                what="a failed pull logged",
            )
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    assert process.returncode == 0
    lines = records(log_path.read_text())
    failed = next(r for r in lines if r.get("image") == missing)
    assert failed["level"] == "WARNING" and failed["logger"] == "prefetcher.controller"
    assert failed["node"] == "cpu-1"
    assert failed["reason"] in ("ErrImagePull", "ImagePullBackOff")
    passes = [r for r in lines if "trigger" in r]
    assert passes and all(isinstance(r["seconds"], float) for r in passes)

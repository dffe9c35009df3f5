"""The load side of the webhook benchmark: sample reviews, and the processes that send them."""

from __future__ import annotations

import http.client
import json
import multiprocessing
import socket
import ssl
import statistics
import time
import uuid
from typing import Any

from bench.webhook_load_servers import HARBOR


def sample_reviews() -> list[bytes]:
    """A mix: a Deployment's pod (patched), a GPU Job with an init container, a foreign image."""

    def review(pod: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": str(uuid.uuid4()),
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": pod["metadata"]["namespace"],
                "operation": "CREATE",
                "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
                "object": pod,
                "dryRun": False,
            },
        }

    def container(
        name: str, image: str, policy: str = "Always", gpu: bool = False
    ) -> dict[str, Any]:
        resources: dict[str, Any] = {"requests": {"cpu": "500m", "memory": "512Mi"}}
        if gpu:
            resources["limits"] = {"nvidia.com/gpu": "1"}
        return {
            "name": name,
            "image": image,
            "imagePullPolicy": policy,
            "resources": resources,
            "ports": [{"containerPort": 8080, "protocol": "TCP"}],
            "env": [{"name": f"VAR_{i}", "value": "x" * 20} for i in range(8)],
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
        }

    def pod(namespace: str, owner: str, containers: list[Any], **spec: Any) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": "x-",
                "namespace": namespace,
                "labels": {"app": "x", "pod-template-hash": "7d9f8b6c5d"},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": owner,
                        "name": "x",
                        "uid": str(uuid.uuid4()),
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "containers": containers,
                "restartPolicy": "Always",
                "dnsPolicy": "ClusterFirst",
                "serviceAccountName": "default",
                "tolerations": [
                    {
                        "key": "node.kubernetes.io/not-ready",
                        "operator": "Exists",
                        "effect": "NoExecute",
                        "tolerationSeconds": 300,
                    }
                ],
                **spec,
            },
        }

    pods = [
        pod(
            "shop",
            "ReplicaSet",
            [
                container("web", f"{HARBOR}/shop/frontend:2.3.1"),
                container("sidecar", "docker.io/envoyproxy/envoy:v1.31.0"),
            ],
        ),
        pod(
            "training",
            "Job",
            [container("train", "nvcr.io/nvidia/pytorch:24.08-py3", gpu=True)],
            initContainers=[container("fetch", f"{HARBOR}/tools/fetcher:2.1")],
            nodeSelector={"nvidia.com/gpu.present": "true"},
        ),
        pod("misc", "ReplicaSet", [container("app", "docker.io/library/busybox:1.36")]),
    ]
    return [json.dumps(review(p)).encode() for p in pods]


def connect(port: int, ca_file: str) -> http.client.HTTPSConnection:
    context = ssl.create_default_context(cafile=ca_file)
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    connection.connect()
    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection


def one_request(connection: http.client.HTTPSConnection, body: bytes) -> float:
    started = time.perf_counter()
    connection.request("POST", "/mutate", body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    payload = response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200 or b'"allowed":true' not in payload.replace(b" ", b""):
        raise RuntimeError(f"bad answer: HTTP {response.status} {payload[:200]!r}")
    return elapsed


def load_process(
    port: int, ca_file: str, threads: int, rate: float, duration: float, start_at: float, out: Any
) -> None:
    """One generator process: `threads` connections; rate 0 = closed loop."""
    import threading

    bodies = sample_reviews()
    results: list[list[float]] = [[] for _ in range(threads)]
    errors: list[str] = []

    def run(index: int) -> None:
        connection = connect(port, ca_file)
        interval = threads / rate if rate else 0.0
        # Spread the connections' schedules over one interval.
        next_send = start_at + (index / threads) * interval
        latencies = results[index]
        count = 0
        while True:
            now = time.time()
            if now >= start_at + duration:
                break
            if interval:
                if next_send > now:
                    time.sleep(next_send - now)
                next_send += interval
            try:
                latencies.append(one_request(connection, bodies[count % len(bodies)]))
            except Exception as exc:
                errors.append(repr(exc))
                connection.close()
                connection = connect(port, ca_file)
            count += 1
        connection.close()

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    out.send(([x for r in results for x in r], errors))
    out.close()


def run_load(
    port: int, ca_file: str, *, processes: int, threads: int, rate: float, duration: float
) -> dict[str, Any]:
    context = multiprocessing.get_context("fork")
    start_at = time.time() + 1.0
    pipes, children = [], []
    for _ in range(processes):
        receiver, sender = context.Pipe(duplex=False)
        child = context.Process(
            target=load_process,
            args=(
                port,
                ca_file,
                threads,
                rate / processes if rate else 0.0,
                duration,
                start_at,
                sender,
            ),
        )
        child.start()
        sender.close()
        pipes.append(receiver)
        children.append(child)
    latencies: list[float] = []
    errors: list[str] = []
    for receiver in pipes:
        got, errs = receiver.recv()
        latencies += got
        errors += errs
    for child in children:
        child.join()
    latencies.sort()

    def percentile(p: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1000

    return {
        "requests": len(latencies),
        "errors": len(errors),
        "rps": len(latencies) / duration,
        "p50": percentile(50),
        "p99": percentile(99),
        "p999": percentile(99.9),
        "mean": statistics.fmean(latencies) * 1000 if latencies else float("nan"),
    }

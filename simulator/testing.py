"""Test helpers: a running simulated API server and a real `kubernetes` client pointed at it.

Usage::

    from kubernetes import client
    from simulator.apiserver import FaultRule
    from simulator.testing import kube_client, running_apiserver

    with running_apiserver() as server:
        core = client.CoreV1Api(kube_client(server))
        core.create_namespace({"metadata": {"name": "demo"}})
        server.write_kubeconfig(tmp_path / "kubeconfig")  # for kubectl --kubeconfig
        server.map_service("image-sync", "image-sync-webhook", "127.0.0.1", 8443)
        server.add_fault(FaultRule(path="/api/v1/pods", verbs=("list",), status=429))
        server.wait_for_gc()  # after deleting owners, before asserting on dependents

See docs/simulator-apiserver.md for what the server supports.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import kubernetes.client

from simulator.apiserver import ApiServer


@contextmanager
def running_apiserver(**kwargs: Any) -> Iterator[ApiServer]:
    """Start an `ApiServer` on a free loopback port (kwargs go to its constructor); stop it after."""
    server = ApiServer(**kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def kube_client(server: ApiServer) -> kubernetes.client.ApiClient:
    """A `kubernetes.client.ApiClient` for `server` (TLS verified when it has a CA file)."""
    config = kubernetes.client.Configuration()
    config.host = server.url
    config.api_key = {"authorization": "image-sync-sim"}
    config.api_key_prefix = {"authorization": "Bearer"}
    if server.tls is not None:
        if server.tls.ca_file:
            config.ssl_ca_cert = server.tls.ca_file
        else:
            config.verify_ssl = False
    return kubernetes.client.ApiClient(config)


@contextmanager
def running_sim_cluster(scenario: Any = None, **kwargs: Any) -> Iterator[Any]:
    """A started `simulator.cluster.SimCluster` (scenario name or object; kwargs to SimCluster)."""
    from simulator.cluster import SimCluster

    with SimCluster(scenario, **kwargs) as cluster:
        yield cluster

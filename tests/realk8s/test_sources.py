"""The Observed and Catalog sources on a real control plane, under the shipped RBAC: the
prefetcher reads a pull secret (get), creates its own CachedImages and their status (the
CRD's schema accepts the registry fields), and deletes the ones a source releases."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imagesync import names
from imagesync.cachedimage import source_object_name
from prefetcher.registry.credentials import Credentials, dockerconfigjson
from simulator.registry import catalog_image
from simulator.registryserver import RegistryServers
from simulator.scenario import load_scenario
from tests.realk8s.components import (
    PREFETCHER_ACCOUNT,
    REFUSED,
    Process,
    get_json,
    kubectl,
    log_lines,
    start_prefetcher,
    token_kubeconfig,
)
from tests.realk8s.conftest import CPU_NODES, GPU_NODES, Installed
from tests.waiting import wait_for

HARBOR = "harbor.example.internal"
BUSYBOX = "docker.io/library/busybox:1.36"
NEWEST = (f"{HARBOR}/library/app:1.1", f"{HARBOR}/library/api:2.4.0")


@pytest.fixture
def registries() -> Iterator[tuple[Any, dict[str, str]]]:
    """The default scenario's registries over HTTP; Harbor's API asks for credentials."""
    built = load_scenario(None).build_registries(time.time())
    harbor = built.registries[HARBOR]
    harbor.credentials, harbor.unauthorized = "robot$sync:s3cret", ()
    servers = RegistryServers(built, time.time)
    try:
        yield built, servers.start()
    finally:
        servers.stop()


def pull_secret() -> dict[str, Any]:
    text = dockerconfigjson({HARBOR: Credentials("robot$sync", "s3cret")})
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "harbor-pull", "namespace": names.POD_NAMESPACE_DEFAULT},
        "data": {".dockerconfigjson": base64.b64encode(text.encode()).decode()},
    }


def finished_pod(node: str) -> dict[str, Any]:
    """A pod that ran on one node and is gone from every list but the node's image list."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "old-smoke",
            "namespace": "default",
            "annotations": {"sim.image-sync.io/run-seconds": "1"},
        },
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": BUSYBOX}],
        },
    }


def cached_images(installed: Installed) -> dict[str, dict[str, Any]]:
    items = get_json(installed.control_plane, names.CACHED_IMAGE_CRD)["items"]
    return {item["metadata"]["name"]: item for item in items}


def test_observed_and_catalog_objects_under_the_shipped_rbac(
    installed: Installed, kubelets: Process, registries: Any, tmp_path: Path
) -> None:
    built, urls = registries
    plane = installed.control_plane
    installed.apply(pull_secret(), finished_pod(CPU_NODES[0]))
    wait_for(
        lambda: (
            get_json(plane, "pod", "-n", "default", "old-smoke")["status"].get("phase")
            == "Succeeded"
        ),
        timeout=120,
        what="the old pod finished",
    )
    rules = [
        {"prefix": f"{HARBOR}/library", "from": ["catalog"], "tags": 1, "endpoint": urls[HARBOR]},
    ]
    env = {
        "IMAGE_SYNC_REGISTRIES": f"{HARBOR},nvcr.io/nvidia,docker.io/library",
        "IMAGE_SYNC_DEFAULT_SOURCES": "declared,learned,observed",
        "IMAGE_SYNC_SOURCES": json.dumps(rules),
        "IMAGE_SYNC_IMAGE_PULL_SECRETS": "harbor-pull",
        "IMAGE_SYNC_CATALOG_INTERVAL": "5s",
    }
    kubeconfig = token_kubeconfig(plane, PREFETCHER_ACCOUNT, tmp_path / "prefetcher.kubeconfig")
    prefetcher = start_prefetcher(kubeconfig, installed.config_file, tmp_path, "sources", **env)
    try:
        observed = source_object_name(BUSYBOX, names.SOURCE_OBSERVED)
        catalog = [source_object_name(i, names.SOURCE_CATALOG) for i in NEWEST]

        def created() -> dict[str, dict[str, Any]] | None:
            objects = cached_images(installed)
            wanted = {observed, *catalog}
            if wanted <= objects.keys() and all(objects[n].get("status") for n in wanted):
                return objects
            return None

        objects = wait_for(created, timeout=120, interval=0.5, what="Observed and Catalog objects")
        assert objects[observed]["spec"]["source"] == names.SOURCE_OBSERVED
        # One profile per pool that holds it: the CPU pool here (earlier tests of the session
        # may have left the image on nodes of other pools, which then count too).
        profiles = objects[observed]["spec"]["profiles"]
        assert any(
            {"key": names.GPU_PRESENT_LABEL, "operator": "DoesNotExist"}
            in profile["requiredNodeAffinity"][0]["matchExpressions"]
            for profile in profiles
        ), profiles
        app = objects[catalog[0]]["status"]
        assert app["compressedSize"] == 49_000_000 and app["platforms"] == [
            "linux/amd64",
            "linux/arm64",
        ]

        def spread() -> dict[str, Any] | None:
            report = prefetcher.report()
            if report is None:
                return None
            by_image = {i["image"]: i["nodes"] for i in report["images"]}
            states = {n: c["state"] for n, c in by_image.get(BUSYBOX, {}).items()}
            if states and all(states[n] == "present" for n in CPU_NODES):
                return report
            return None

        wait_for(spread, timeout=120, interval=0.5, what="busybox on every CPU node")
        # Spread to the pools its object names, no further: the CPU pool here; the GPU pool
        # only if a GPU node was seen holding it (an earlier test of the session may have
        # left it there, and a pool is remembered for imageRetention).
        gpu_pool = {"key": names.GPU_PRESENT_LABEL, "operator": "In", "values": ["true"]}

        def gpu_nodes_as_the_object_says() -> bool:
            gpu_held = any(
                gpu_pool in profile["requiredNodeAffinity"][0]["matchExpressions"]
                for profile in cached_images(installed)[observed]["spec"]["profiles"]
            )
            report = prefetcher.report() or {"images": []}
            nodes: dict[str, Any] = next(
                (i["nodes"] for i in report["images"] if i["image"] == BUSYBOX), {}
            )
            states = {nodes.get(n, {}).get("state") for n in GPU_NODES}
            return ("ineligible" not in states) if gpu_held else states == {"ineligible"}

        wait_for(gpu_nodes_as_the_object_says, timeout=60, interval=0.5, what="GPU pool states")

        # A newer tag: the catalog's old object is deleted (the shipped RBAC allows it).
        built.registries[HARBOR].add(
            catalog_image(
                f"{HARBOR}/library/app:1.2",
                compressed="50MB",
                disk="140MB",
                archs=("amd64", "arm64"),
                created=time.time(),
            )
        )
        wait_for(
            lambda: catalog[0] not in cached_images(installed),
            timeout=60,
            interval=0.5,
            what="the replaced tag's object deleted",
        )
        assert not log_lines(prefetcher.process.log(), REFUSED)
    finally:
        prefetcher.process.stop()
        # Leave the session's cluster as the other tests expect it.
        kubectl(plane, "delete", "pod", "-n", "default", "old-smoke", "--wait=false")
        kubectl(plane, "delete", "secret", "-n", names.POD_NAMESPACE_DEFAULT, "harbor-pull")
        kubectl(
            plane,
            "delete",
            names.CACHED_IMAGE_CRD,
            "-l",
            f"{names.LABEL_MANAGED_BY}={names.MANAGED_BY}",
        )

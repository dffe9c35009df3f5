"""One real control plane per test session, image-sync installed on it as a user would, the
webhook running under its own ServiceAccount and simulated kubelets attached."""

from __future__ import annotations

import base64
import copy
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from imagesync import names
from tests.manifests.render import render
from tests.realk8s.components import (
    IMAGE_SYNC,
    WEBHOOK_ACCOUNT,
    Process,
    component_environment,
    get_json,
    kubectl,
    start_process,
    token_kubeconfig,
)
from tests.realk8s.controlplane import HOW_TO_GET, REQUIRE_VARIABLE, ControlPlane, find_binaries
from tests.skips import skip_without
from tests.waiting import wait_for
from tests.webhook.conftest import Tls, WebhookProcess, make_tls, start_webhook

# Objects whose pods would run the project's container image, which a test machine has not
# got: their server-side dry run is checked, the components run as local processes instead.
NEEDS_IMAGE = frozenset({"Deployment", "Job", "CronJob"})
# Kinds another add-on defines (cert-manager's Issuer and Certificate, the Prometheus
# operator's ServiceMonitor and PrometheusRule, in the overlays): that add-on is not
# installed here, so the real server has no schema for them.
FOREIGN_GROUPS = ("cert-manager.io/", "monitoring.coreos.com/")
# The simulated nodes of the default scenario that the real API server gets.
CPU_NODES = ("cpu-1", "cpu-2", "cpu-3", "cpu-4")
GPU_NODES = ("gpu-1", "gpu-2")


def _required() -> bool:
    return os.environ.get(REQUIRE_VARIABLE) == "1"


class _Unavailable(pytest.Module):
    """A test module of this folder when there is no control plane to run it on."""

    def collect(self) -> list[Any]:
        skip_without(
            "a Kubernetes control plane", HOW_TO_GET
        )  # one place, so the summary shows one line for every module


def pytest_pycollect_makemodule(module_path: Path, parent: Any) -> pytest.Module | None:
    """Without the binaries the whole folder is skipped in one line, unless they are required
    ($IMAGE_SYNC_REQUIRE_REALK8S=1, as in CI): then every test fails with the same reason."""
    if find_binaries() is None and not _required():
        return _Unavailable.from_parent(parent, path=module_path)
    return None


def own_objects(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rendered objects of image-sync itself (not another add-on's custom resources)."""
    return [o for o in objects if not o["apiVersion"].startswith(FOREIGN_GROUPS)]


def manifest_text(objects: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects)


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd, kube-apiserver, kube-controller-manager and kube-scheduler on free loopback ports,
    with their own state folder; stopped when the session ends."""
    binaries = find_binaries()
    if binaries is None:
        pytest.fail(f"{HOW_TO_GET} ({REQUIRE_VARIABLE}=1)", pytrace=False)
    plane = ControlPlane.create(binaries, tmp_path_factory.mktemp("realk8s"))
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()


@dataclass
class Installed:
    """image-sync as applied from manifests/base, minus the objects that run its image."""

    control_plane: ControlPlane
    objects: list[dict[str, Any]]
    config_file: Path
    workdir: Path

    def rendered(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        """The rendered object (in `namespace`, where two of the name exist)."""
        [found] = [
            o
            for o in self.objects
            if o["kind"] == kind
            and o["metadata"]["name"] == name
            and namespace in (None, o["metadata"].get("namespace"))
        ]
        return copy.deepcopy(found)

    def apply(self, *objects: dict[str, Any]) -> None:
        kubectl(self.control_plane, "apply", "-f", "-", stdin=manifest_text(list(objects)))


@pytest.fixture(scope="session")
def installed(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """`kubectl apply -k manifests/base` of everything that does not run the project's
    image; the ConfigMap's config.yaml is what the local components read."""
    objects = render("base")
    applied = [o for o in objects if o["kind"] not in NEEDS_IMAGE]
    kubectl(control_plane, "apply", "-f", "-", stdin=manifest_text(applied))
    kubectl(
        control_plane,
        "wait",
        "--for=condition=Established",
        f"crd/{names.CACHED_IMAGE_PLURAL}.{names.GROUP}",
    )
    workdir = tmp_path_factory.mktemp("image-sync")
    [config_map] = [o for o in objects if o["kind"] == "ConfigMap"]
    config_file = workdir / "config.yaml"
    config_file.write_text(config_map["data"]["config.yaml"])
    return Installed(control_plane, objects, config_file, workdir)


@pytest.fixture(scope="session")
def kubelets(installed: Installed, webhook: WebhookProcess) -> Iterator[Process]:
    """`image-sync sim --attach`: the default scenario's 4 CPU and 2 GPU simulated kubelets at
    real speed, scheduled by the real kube-scheduler. With the webhook serving: the shipped
    pod guard (failurePolicy Fail) refuses every pod of the pod namespace until it answers."""
    del webhook
    plane = installed.control_plane
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGE_SYNC_")}
    process = start_process(
        "kubelets",
        [
            IMAGE_SYNC,
            "sim",
            "--attach",
            str(plane.kubeconfig),
            "--no-workload",
            "--no-scheduler",
            "--speed",
            "1",
        ],
        env,
        installed.workdir,
    )

    def all_ready() -> bool:
        if not process.alive():
            raise AssertionError(f"image-sync sim --attach exited:\n{process.log()}")
        nodes = get_json(plane, "nodes")["items"]
        ready = {
            n["metadata"]["name"]
            for n in nodes
            for c in n.get("status", {}).get("conditions", [])
            if c["type"] == "Ready" and c["status"] == "True"
        }
        return ready >= {*CPU_NODES, *GPU_NODES}

    try:
        wait_for(all_ready, timeout=120, what="the simulated nodes Ready")
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def webhook(installed: Installed) -> Iterator[WebhookProcess]:
    """The real webhook (gunicorn over TLS) under the webhook ServiceAccount's token, called by
    the real API server through the shipped MutatingWebhookConfiguration and the pod guard's
    ValidatingWebhookConfiguration, registered by URL and caBundle (a `service` reference
    goes to a ClusterIP nothing answers here)."""
    workdir = installed.workdir
    tls: Tls = make_tls(workdir / "tls")
    kubeconfig = token_kubeconfig(
        installed.control_plane, WEBHOOK_ACCOUNT, workdir / "webhook.kubeconfig"
    )
    config = yaml.safe_load(installed.config_file.read_text())
    env = component_environment(
        installed.config_file,
        IMAGE_SYNC_REGISTRIES=",".join(config["registries"]),
        IMAGE_SYNC_LEARN_FLUSH_INTERVAL="1s",
    )
    server = start_webhook(workdir, tls, env=env, kubeconfig=str(kubeconfig))
    configuration = installed.rendered("MutatingWebhookConfiguration", names.WEBHOOK_CONFIGURATION)
    ca_bundle = base64.b64encode(Path(tls.ca_file).read_bytes()).decode()
    guard = installed.rendered("ValidatingWebhookConfiguration", names.POD_GUARD_CONFIGURATION)
    for config, path in ((configuration, "/mutate"), (guard, "/validate-pods")):
        for hook in config["webhooks"]:
            assert hook["clientConfig"]["service"]["path"] == path
            hook["clientConfig"] = {"url": f"{server.url}{path}", "caBundle": ca_bundle}
    installed.apply(configuration, guard)
    try:
        yield server
    finally:
        server.stop()

"""The pod namespace on the real control plane: the prefetcher may create pods only there,
only shaped like its own (the pod guard, served by the webhook and called by the real API
server), and those pods run under a ServiceAccount that may do nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from imagesync.names import NAMESPACE_DEFAULT, POD_NAMESPACE_DEFAULT, POD_SERVICE_ACCOUNT
from tests.podguard_cases import BREACHES, breached, message, own_pods
from tests.realk8s.components import (
    PREFETCHER_ACCOUNT,
    get_json,
    kubectl,
    token_kubeconfig,
)
from tests.realk8s.conftest import CPU_NODES, Installed
from tests.webhook.conftest import WebhookProcess

POD_IDENTITY = f"system:serviceaccount:{POD_NAMESPACE_DEFAULT}:{POD_SERVICE_ACCOUNT}"
# Breaches an earlier step refuses before the guard is asked: the namespace's `restricted`
# Pod Security level, the ServiceAccount plugin (no such account there), validation (a mount
# of a volume the pod does not have).
CAUGHT_EARLIER = {
    "the prefetcher's account": "error looking up service account",
    "a mount of another volume": "is invalid",
    "host network": "violates PodSecurity",
    "host PID": "violates PodSecurity",
    "a hostPath volume under our name": "violates PodSecurity",
    "a port": "violates PodSecurity",
    "privileged": "violates PodSecurity",
}


@pytest.fixture(scope="module")
def prefetcher_kubeconfig(installed: Installed, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("guard") / "prefetcher.kubeconfig"
    return token_kubeconfig(installed.control_plane, PREFETCHER_ACCOUNT, path)


def on_real_node(pod: dict[str, Any], namespace: str = POD_NAMESPACE_DEFAULT) -> dict[str, Any]:
    """One of the guard's test pods, bound to a node of this cluster, without an owner."""
    pod["metadata"].pop("ownerReferences", None)
    pod["metadata"]["namespace"] = namespace
    pod["spec"]["nodeName"] = CPU_NODES[0]
    return pod


def create(installed: Installed, kubeconfig: Path, pod: dict[str, Any]) -> tuple[bool, str]:
    """Create `pod` as the prefetcher would (a server-side dry run: admission runs in full,
    nothing is stored); whether it was accepted, and the server's answer."""
    result = kubectl(
        installed.control_plane,
        "create",
        "--dry-run=server",
        "-f",
        "-",
        kubeconfig=kubeconfig,
        stdin=json.dumps(pod),
        check=False,
    )
    return result.returncode == 0, result.stdout + result.stderr


def test_the_prefetcher_creates_its_own_pods_in_the_pod_namespace(
    installed: Installed, webhook: WebhookProcess, prefetcher_kubeconfig: Path
) -> None:
    for pod in own_pods():
        accepted, answer = create(installed, prefetcher_kubeconfig, on_real_node(pod))
        assert accepted, answer


def test_the_prefetcher_creates_no_pod_anywhere_else(
    installed: Installed, webhook: WebhookProcess, prefetcher_kubeconfig: Path
) -> None:
    for namespace in (NAMESPACE_DEFAULT, "default", "kube-system"):
        pod = on_real_node(own_pods()[1], namespace)
        accepted, answer = create(installed, prefetcher_kubeconfig, pod)
        assert not accepted and "forbidden" in answer.lower(), (namespace, answer)


def test_the_guard_refuses_every_other_shape(
    installed: Installed, webhook: WebhookProcess, prefetcher_kubeconfig: Path
) -> None:
    start = len(webhook.log())
    [puller, _] = own_pods()
    for what, rule, make in BREACHES:
        if what == "left to the scheduler":
            continue  # on_real_node binds it again; the guard's own tests cover it
        pod = breached(on_real_node(puller), make)
        accepted, answer = create(installed, prefetcher_kubeconfig, pod)
        assert not accepted, f"{what} was let in"
        if what in CAUGHT_EARLIER:
            assert CAUGHT_EARLIER[what] in answer, (what, answer)
        else:
            assert "pods.guard.image-sync.io" in answer, (what, answer)
            assert message(rule) in answer, (what, answer)
    refused = webhook.log()[start:].count("pod guard refused")
    assert refused == len(BREACHES) - 1 - len(CAUGHT_EARLIER)


def test_the_pods_account_may_do_nothing(installed: Installed) -> None:
    plane = installed.control_plane
    account = get_json(plane, "serviceaccount", POD_SERVICE_ACCOUNT, "-n", POD_NAMESPACE_DEFAULT)
    assert account["automountServiceAccountToken"] is False
    for verb, resource, namespace in [
        ("get", "secrets", POD_NAMESPACE_DEFAULT),
        ("list", "secrets", POD_NAMESPACE_DEFAULT),
        ("create", "pods", POD_NAMESPACE_DEFAULT),
        ("get", "pods", POD_NAMESPACE_DEFAULT),
        ("get", "secrets", NAMESPACE_DEFAULT),
        ("list", "nodes", ""),
        ("list", "cachedimages.image-sync.io", ""),
    ]:
        scope = ["-n", namespace] if namespace else []
        result = kubectl(
            plane, "auth", "can-i", verb, resource, "--as", POD_IDENTITY, *scope, check=False
        )
        assert result.stdout.strip() == "no", (verb, resource, namespace)


def test_the_pod_namespace_holds_no_credentials_of_image_sync(installed: Installed) -> None:
    plane = installed.control_plane
    secrets = get_json(plane, "secrets", "-n", POD_NAMESPACE_DEFAULT)["items"]
    assert secrets == []  # only the pull secrets an admin puts there
    accounts = {
        a["metadata"]["name"]
        for a in get_json(plane, "serviceaccounts", "-n", POD_NAMESPACE_DEFAULT)["items"]
    }
    assert accounts <= {"default", POD_SERVICE_ACCOUNT}
    bindings = get_json(plane, "rolebindings", "-n", POD_NAMESPACE_DEFAULT)["items"]
    subjects = {(s["namespace"], s["name"]) for b in bindings for s in b.get("subjects") or []}
    assert subjects == {(NAMESPACE_DEFAULT, PREFETCHER_ACCOUNT)}

"""Pods for the admission guard's tests: image-sync's own, and one breach of each rule."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from imagesync.podguard import RULES
from prefetcher.pods import build_keeper, build_puller
from tests.prefetcher.test_core_fixtures import APP, PYTORCH, config, node

Pod = dict[str, Any]
CONFIG = config(image_pull_secrets=("harbor-pull",))


def own_pods() -> list[Pod]:
    """A puller and a keeper exactly as the prefetcher builds them."""
    gpu = node("gpu-1", gpu=8)
    return [
        build_puller(gpu, [PYTORCH, APP], CONFIG, deadline_seconds=900),
        build_keeper(gpu, [PYTORCH, APP], CONFIG),
    ]


def _spec(pod: Pod) -> Pod:
    spec: Pod = pod["spec"]
    return spec


def _main(pod: Pod) -> Pod:
    container: Pod = pod["spec"]["containers"][0]
    return container


# (what the breach is, the rule it breaks (index into RULES), how to make it)
BREACHES: list[tuple[str, int, Callable[[Pod], None]]] = [
    ("not labelled as ours", 0, lambda p: p["metadata"]["labels"].clear()),
    (
        "another component",
        0,
        lambda p: p["metadata"]["labels"].update({"app.kubernetes.io/component": "shell"}),
    ),
    ("the default account", 1, lambda p: _spec(p).update(serviceAccountName="default")),
    (
        "the prefetcher's account",
        1,
        lambda p: _spec(p).update(serviceAccountName="image-sync-prefetcher"),
    ),
    ("a mounted token", 1, lambda p: _spec(p).update(automountServiceAccountToken=True)),
    (
        "token mounting left to the account",
        1,
        lambda p: _spec(p).pop("automountServiceAccountToken"),
    ),
    ("left to the scheduler", 2, lambda p: _spec(p).pop("nodeName")),
    ("host network", 3, lambda p: _spec(p).update(hostNetwork=True)),
    ("host PID", 3, lambda p: _spec(p).update(hostPID=True)),
    (
        "a Secret volume",
        4,
        lambda p: _spec(p)["volumes"].append(
            {"name": "pull", "secret": {"secretName": "harbor-pull"}}
        ),
    ),
    (
        "a hostPath volume under our name",
        4,
        lambda p: _spec(p).update(volumes=[{"name": "image-sync-bin", "hostPath": {"path": "/"}}]),
    ),
    (
        "a projected token volume",
        4,
        lambda p: _spec(p)["volumes"].append(
            {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}
        ),
    ),
    (
        "the pull secret in the environment",
        5,
        lambda p: _main(p).update(
            env=[
                {
                    "name": "AUTH",
                    "valueFrom": {
                        "secretKeyRef": {"name": "harbor-pull", "key": ".dockerconfigjson"}
                    },
                }
            ]
        ),
    ),
    (
        "envFrom a Secret",
        5,
        lambda p: _main(p).update(envFrom=[{"secretRef": {"name": "harbor-pull"}}]),
    ),
    (
        "a mount of another volume",
        5,
        lambda p: _main(p)["volumeMounts"].append({"name": "pull", "mountPath": "/pull"}),
    ),
    ("a shell", 6, lambda p: _main(p).update(command=["/bin/sh", "-c", "cat /pull/*"])),
    ("arguments", 6, lambda p: _main(p).update(args=["--steal"])),
    ("no command (the image's entrypoint)", 6, lambda p: _main(p).pop("command")),
    (
        "an init container of its own",
        6,
        lambda p: _spec(p)["initContainers"][0].update(command=["/bin/sh"]),
    ),
    ("a port", 6, lambda p: _main(p).update(ports=[{"containerPort": 22, "hostPort": 22}])),
    (
        "privileged",
        7,
        lambda p: _main(p)["securityContext"].update(
            privileged=True, allowPrivilegeEscalation=True
        ),
    ),
    ("tolerates everything", 8, lambda p: _spec(p).update(tolerations=[{"operator": "Exists"}])),
    (
        "tolerates disk pressure",
        8,
        lambda p: _spec(p).update(
            tolerations=[
                {
                    "key": "node.kubernetes.io/disk-pressure",
                    "operator": "Exists",
                    "effect": "NoSchedule",
                }
            ]
        ),
    ),
]


def breached(pod: Pod, make: Callable[[Pod], None]) -> Pod:
    changed = copy.deepcopy(pod)
    make(changed)
    return changed


def message(rule: int) -> str:
    return RULES[rule].message

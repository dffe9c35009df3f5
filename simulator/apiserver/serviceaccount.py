"""The real server's ServiceAccount admission plugin, as it changes a pod before the mutating
webhooks see it: a projected token volume mounted in every container."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_VOLUME_PREFIX = "kube-api-access-"


def mount_token(pod: Obj, suffix: str) -> None:
    """A projected token volume mounted read-only in every container, unless the pod opts
    out or already mounts something there."""
    spec = pod.get("spec") or {}
    if spec.get("automountServiceAccountToken") is False:
        return
    containers = [
        c
        for section in ("initContainers", "containers")
        for c in spec.get(section) or []
        if isinstance(c, dict)
    ]
    volumes = spec.get("volumes") or []
    if any(str(v.get("name", "")).startswith(TOKEN_VOLUME_PREFIX) for v in volumes) or any(
        m.get("mountPath") == TOKEN_MOUNT_PATH
        for c in containers
        for m in c.get("volumeMounts") or []
    ):
        return
    name = f"{TOKEN_VOLUME_PREFIX}{suffix}"
    spec["volumes"] = [
        *volumes,
        {
            "name": name,
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {
                        "configMap": {
                            "name": "kube-root-ca.crt",
                            "items": [{"key": "ca.crt", "path": "ca.crt"}],
                        }
                    },
                    {
                        "downwardAPI": {
                            "items": [
                                {
                                    "path": "namespace",
                                    "fieldRef": {
                                        "apiVersion": "v1",
                                        "fieldPath": "metadata.namespace",
                                    },
                                }
                            ]
                        }
                    },
                ],
            },
        },
    ]
    for container in containers:
        container["volumeMounts"] = [
            *(container.get("volumeMounts") or []),
            {"name": name, "readOnly": True, "mountPath": TOKEN_MOUNT_PATH},
        ]

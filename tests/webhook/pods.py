"""Realistic pods and AdmissionReviews, as the API server sends them (defaults already applied)."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from typing import Any

import jsonpatch

HARBOR = "harbor.example.internal"
REGISTRIES = f"{HARBOR},nvcr.io/nvidia,registry.corp.example:5000/ml"
DIGEST = "sha256:" + "ab" * 32


def container(
    name: str, image: str, policy: str | None = "IfNotPresent", **extra: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": name,
        "image": image,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    if policy is not None:
        out["imagePullPolicy"] = policy
    out.update(extra)
    return out


def pod(
    containers: list[dict[str, Any]],
    *,
    init: list[dict[str, Any]] | None = None,
    namespace: str = "default",
    annotations: dict[str, str] | None = None,
    owner: tuple[str, str] | None = None,
    node_selector: dict[str, str] | None = None,
    tolerations: list[dict[str, Any]] | None = None,
    affinity: dict[str, Any] | None = None,
    generate_name: str = "app-",
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"generateName": generate_name, "namespace": namespace}
    if annotations:
        metadata["annotations"] = annotations
    if owner:
        kind, name = owner
        metadata["ownerReferences"] = [
            {
                "apiVersion": "batch/v1" if kind == "Job" else "apps/v1",
                "kind": kind,
                "name": name,
                "uid": str(uuid.uuid4()),
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        metadata["labels"] = {"app": name}
    spec: dict[str, Any] = {
        "containers": containers,
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default",
        "schedulerName": "default-scheduler",
        "securityContext": {},
        "tolerations": tolerations
        or [
            {
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
            {
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
        ],
    }
    if init:
        spec["initContainers"] = init
    if node_selector:
        spec["nodeSelector"] = node_selector
    if affinity:
        spec["affinity"] = affinity
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def deployment_pod(
    image: str, policy: str | None = "IfNotPresent", **kwargs: Any
) -> dict[str, Any]:
    """A pod as a Deployment's ReplicaSet creates it: owned by the ReplicaSet, hash label."""
    made = pod([container("app", image, policy)], owner=("ReplicaSet", "web-7d9f8b6c5d"), **kwargs)
    made["metadata"]["labels"]["pod-template-hash"] = "7d9f8b6c5d"
    return made


def gpu_job_pod(
    image: str = "nvcr.io/nvidia/pytorch:24.08-py3", policy: str = "Always"
) -> dict[str, Any]:
    train = container("train", image, policy)
    train["resources"] = {
        "limits": {"nvidia.com/gpu": "1"},
        "requests": {"nvidia.com/gpu": "1", "cpu": "4"},
    }
    made = pod(
        [train],
        init=[container("fetch-data", f"{HARBOR}/tools/fetcher:2.1", "Always")],
        namespace="training",
        owner=("Job", "train-resnet"),
        node_selector={"nvidia.com/gpu.present": "true"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        affinity={
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
                            ]
                        }
                    ]
                }
            }
        },
    )
    made["spec"]["restartPolicy"] = "Never"
    return made


def review(
    obj: dict[str, Any] | None,
    *,
    operation: str = "CREATE",
    kind: str = "Pod",
    group: str = "",
    resource: str = "pods",
    namespace: str | None = None,
    dry_run: bool = False,
    uid: str | None = None,
) -> dict[str, Any]:
    ns = (
        namespace
        if namespace is not None
        else ((obj or {}).get("metadata") or {}).get("namespace", "default")
    )
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid or str(uuid.uuid4()),
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "requestKind": {"group": group, "version": "v1", "kind": kind},
            "requestResource": {"group": group, "version": "v1", "resource": resource},
            "name": "",
            "namespace": ns,
            "operation": operation,
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": obj,
            "oldObject": None,
            "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


def apply_response(obj: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    """The pod after the webhook's patch (a copy); checks the response envelope too."""
    assert response["apiVersion"] == "admission.k8s.io/v1"
    assert response["kind"] == "AdmissionReview"
    answer = response["response"]
    assert answer["allowed"] is True
    if "patch" not in answer:
        assert "patchType" not in answer
        return copy.deepcopy(obj)
    assert answer["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(answer["patch"]))
    assert patch, "an empty patch must be left out"
    result: dict[str, Any] = jsonpatch.apply_patch(obj, patch)
    return result


def policies(obj: dict[str, Any]) -> dict[str, str | None]:
    spec = obj["spec"]
    return {
        f"{section}/{c['name']}": c.get("imagePullPolicy")
        for section in ("initContainers", "containers", "ephemeralContainers")
        for c in spec.get(section) or []
    }

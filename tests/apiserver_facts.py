"""What the real kube-apiserver answers, pinned once: tests/realk8s checks these answers on the
real server and tests/simulator checks that the simulator's API server gives the same."""

from __future__ import annotations

from typing import Any, NamedTuple

from kubernetes import client
from kubernetes.client.exceptions import ApiException


class JsonPatchCase(NamedTuple):
    """One JSON patch on the probe ConfigMap and the real server's answer."""

    why: str
    ops: list[dict[str, Any]]
    status: int
    labels: dict[str, str] | None = None  # the labels after a patch that succeeded


# The probe ConfigMap has labels {"keep": "1"}, data {"a": "1"} and no annotations.
JSON_PATCH_CASES = (
    JsonPatchCase(
        "replace of a missing key of an existing map adds it",
        [{"op": "replace", "path": "/metadata/labels/missing", "value": "v"}],
        200,
        {"keep": "1", "missing": "v"},
    ),
    JsonPatchCase(
        "replace of an existing key",
        [{"op": "replace", "path": "/metadata/labels/keep", "value": "2"}],
        200,
        {"keep": "2"},
    ),
    JsonPatchCase(
        "replace under a missing map",
        [{"op": "replace", "path": "/metadata/annotations/missing", "value": "v"}],
        422,
    ),
    JsonPatchCase(
        "add under a missing map",
        [{"op": "add", "path": "/metadata/annotations/x", "value": "v"}],
        422,
    ),
    JsonPatchCase("remove of a missing key", [{"op": "remove", "path": "/data/zzz"}], 422),
    JsonPatchCase("a failed test", [{"op": "test", "path": "/data/a", "value": "nope"}], 422),
)


def check_json_patch(api: client.ApiClient, namespace: str, case: JsonPatchCase) -> None:
    """Create the probe ConfigMap, send `case.ops` through the real client, compare."""
    core: Any = client.CoreV1Api(api)
    name = "json-patch-probe"
    try:
        core.delete_namespaced_config_map(name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
    core.create_namespaced_config_map(
        namespace,
        {"metadata": {"name": name, "labels": {"keep": "1"}}, "data": {"a": "1"}},
    )
    try:
        patched = core.patch_namespaced_config_map(name, namespace, case.ops)
    except ApiException as exc:
        assert exc.status == case.status, (case.why, exc.status, exc.body)
        return
    assert case.status == 200, (case.why, "succeeded")
    assert patched.metadata.labels == case.labels, case.why
    assert core.read_namespaced_config_map(name, namespace).metadata.labels == case.labels

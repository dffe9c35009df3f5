"""CustomResourceDefinitions: discovery, custom objects, /status, scope, deletion."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.manifests.render import ROOT

GROUP, VERSION = "image-sync.io", "v1alpha1"


def crd(plural: str, kind: str, scope: str, status: bool) -> dict[str, Any]:
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {
            "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        },
        "additionalPrinterColumns": [
            {"name": "Image", "type": "string", "jsonPath": ".spec.image"}
        ],
    }
    if status:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "plural": plural,
                "singular": kind.lower(),
                "kind": kind,
                "listKind": f"{kind}List",
            },
            "scope": scope,
            "versions": [version],
        },
    }


@pytest.fixture
def custom(api) -> client.CustomObjectsApi:
    ext: Any = client.ApiextensionsV1Api(api)
    made = ext.create_custom_resource_definition(
        crd("cachedimages", "CachedImage", "Cluster", True)
    )
    assert {c.type: c.status for c in made.status.conditions}["Established"] == "True"
    ext.create_custom_resource_definition(crd("notes", "Note", "Namespaced", False))
    return client.CustomObjectsApi(api)


def test_crd_appears_in_discovery(custom, apiserver) -> None:
    groups = requests.get(f"{apiserver.url}/apis", timeout=10).json()["groups"]
    assert {"groupVersion": f"{GROUP}/{VERSION}", "version": VERSION} in next(
        g["versions"] for g in groups if g["name"] == GROUP
    )
    res = requests.get(f"{apiserver.url}/apis/{GROUP}/{VERSION}", timeout=10).json()["resources"]
    names = {r["name"]: r["namespaced"] for r in res}
    assert names == {"cachedimages": False, "cachedimages/status": False, "notes": True}


def test_custom_objects_crud_and_status(custom) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "CachedImage",
        "metadata": {"name": "img"},
        "spec": {"image": "nvcr.io/nvidia/cuda:12"},
        "status": {"score": 5},
    }
    made = custom.create_cluster_custom_object(GROUP, VERSION, "cachedimages", body)
    assert "status" not in made  # status is only written through /status
    made["spec"]["image"] = "x"
    made["status"] = {"score": 1}
    updated = custom.replace_cluster_custom_object(GROUP, VERSION, "cachedimages", "img", made)
    assert updated["spec"]["image"] == "x" and "status" not in updated
    assert updated["metadata"]["generation"] == 2
    st = custom.patch_cluster_custom_object_status(
        GROUP,
        VERSION,
        "cachedimages",
        "img",
        {"status": {"score": 7}, "spec": {"image": "ignored"}},
    )
    assert st["status"] == {"score": 7} and st["spec"]["image"] == "x"
    assert st["metadata"]["generation"] == 2  # status writes do not bump generation
    listed = custom.list_cluster_custom_object(GROUP, VERSION, "cachedimages")
    assert [o["metadata"]["name"] for o in listed["items"]] == ["img"]
    assert listed["kind"] == "CachedImageList"


def test_custom_objects_without_status_subresource_keep_status(custom) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Note",
        "metadata": {"name": "n"},
        "status": {"x": 1},
    }
    made = custom.create_namespaced_custom_object(GROUP, VERSION, "default", "notes", body)
    assert made["status"] == {"x": 1}
    with pytest.raises(ApiException) as err:
        custom.get_namespaced_custom_object_status(GROUP, VERSION, "default", "notes", "n")
    assert err.value.status == 404


def test_strategic_merge_patch_on_custom_resources_is_415(custom, apiserver) -> None:
    custom.create_cluster_custom_object(
        GROUP,
        VERSION,
        "cachedimages",
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CachedImage", "metadata": {"name": "i"}},
    )
    resp = requests.patch(
        f"{apiserver.url}/apis/{GROUP}/{VERSION}/cachedimages/i",
        data="{}",
        headers={"Content-Type": "application/strategic-merge-patch+json"},
        timeout=10,
    )
    assert resp.status_code == 415
    merged = custom.patch_cluster_custom_object(
        GROUP, VERSION, "cachedimages", "i", {"spec": {"image": "a"}}
    )
    assert merged["spec"] == {"image": "a"}


def test_deleting_the_crd_removes_objects_and_routes(custom, api, apiserver) -> None:
    custom.create_cluster_custom_object(
        GROUP,
        VERSION,
        "cachedimages",
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CachedImage", "metadata": {"name": "i"}},
    )
    client.ApiextensionsV1Api(api).delete_custom_resource_definition(f"cachedimages.{GROUP}")
    resp = requests.get(f"{apiserver.url}/apis/{GROUP}/{VERSION}/cachedimages", timeout=10)
    assert resp.status_code == 404
    res = requests.get(f"{apiserver.url}/apis/{GROUP}/{VERSION}", timeout=10).json()["resources"]
    assert [r["name"] for r in res] == ["notes"]


def test_custom_resources_are_checked_and_pruned_against_the_shipped_schema(api) -> None:
    """As the real server does with the shipped CRD (tests/realk8s/test_differential.py)."""
    shipped = yaml.safe_load((ROOT / "manifests/base/crd-cachedimages.yaml").read_text())
    client.ApiextensionsV1Api(api).create_custom_resource_definition(shipped)
    custom: Any = client.CustomObjectsApi(api)

    def create(name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "CachedImage",
                "metadata": {"name": name}, "spec": spec}  # fmt: skip
        result: dict[str, Any] = custom.create_cluster_custom_object(
            GROUP, VERSION, "cachedimages", body
        )
        return result

    for spec, reason, field in (
        ({"image": 5, "source": "Learned"}, "FieldValueTypeInvalid", "spec.image"),
        ({"image": "x", "source": "Bogus"}, "FieldValueNotSupported", "spec.source"),
        ({"source": "Learned"}, "FieldValueRequired", "spec.image"),
    ):
        with pytest.raises(ApiException) as err:
            create("wrong", spec)
        assert err.value.status == 422
        details = json.loads(str(err.value.body))["details"]
        assert [(c["reason"], c["field"]) for c in details["causes"]] == [(reason, field)]
    kept = create("pruned", {"image": "x", "source": "Learned", "unknown": 1})
    assert kept["spec"] == {"image": "x", "source": "Learned"}

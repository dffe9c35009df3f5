"""The CachedImage CRD accepts exactly the objects imagesync/cachedimage.py describes."""

from __future__ import annotations

import copy
import re
import types
import typing
from datetime import UTC, datetime
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from imagesync import cachedimage, names
from tests.manifests.render import find, render

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return find(render("base"), "CustomResourceDefinition")


@pytest.fixture(scope="module")
def schema(crd: dict[str, Any]) -> dict[str, Any]:
    version = crd["spec"]["versions"][0]
    result: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return result


def closed(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown fields forbidden: what the API server would silently prune
    (a structural schema drops unknown fields) becomes a validation error here."""
    out = copy.deepcopy(schema)

    def visit(node: dict[str, Any]) -> None:
        if "properties" in node:
            node.setdefault("additionalProperties", False)
            for child in node["properties"].values():
                visit(child)
        if isinstance(node.get("additionalProperties"), dict):
            visit(node["additionalProperties"])
        if "items" in node:
            visit(node["items"])

    visit(out)
    out["properties"]["metadata"] = {"type": "object"}
    return out


def _check_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    cachedimage.parse_time(value)  # raises ValueError on anything else
    return True


FORMATS = jsonschema.FormatChecker(formats=())
FORMATS.checks("date-time", raises=ValueError)(_check_time)


def validate(schema: dict[str, Any], obj: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(closed(schema), format_checker=FORMATS).validate(obj)


# --- samples, built with the code that writes them -------------------------------------------

GPU_POD = {
    "metadata": {"ownerReferences": [{"kind": "Job", "name": "train", "controller": True}]},
    "spec": {
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}
                            ]
                        },
                        {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]},
                    ]
                }
            }
        },
        "tolerations": [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        ],
        "containers": [{"name": "t", "image": "nvcr.io/nvidia/pytorch:24.08-py3",
                        "resources": {"limits": {"nvidia.com/gpu": 1}}}],
    },
}  # fmt: skip


def learned_sample() -> dict[str, Any]:
    profile = cachedimage.profile_from_pod(GPU_POD, "training")
    profile["lastSeen"] = cachedimage.format_time(NOW)
    plain = cachedimage.profile_from_pod({"spec": {"containers": []}}, "default")
    obj = cachedimage.new_cached_image(
        "nvcr.io/nvidia/pytorch:24.08-py3", cachedimage.merge_profiles([], [profile, plain])
    )
    obj["status"] = cachedimage.CachedImageStatus(
        lastSeen=cachedimage.format_time(NOW),
        useCount=1234,
        dailyUses=cachedimage.merge_daily_uses({"2026-11-21": 12}, {"2026-11-22": 40}, NOW),
        score=17.2,
        nodesWanted=2,
        nodesPresent=1,
        lastError="gpu-1: ErrImagePull: 401 Unauthorized",
    )
    return obj


def declared_sample() -> dict[str, Any]:
    image = "harbor.example.internal/library/app:1.0"
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.CACHED_IMAGE_KIND,
        "metadata": {"name": cachedimage.object_name(image)},
        "spec": cachedimage.CachedImageSpec(
            image=image, source=names.SOURCE_DECLARED, nodeSelector={"pool": "cpu"}
        ),
        "status": {"score": 0, "nodesWanted": 0, "nodesPresent": 0, "lastError": ""},
    }


# --- the CRD's identity ----------------------------------------------------------------------


def test_names_agree_with_the_code(crd: dict[str, Any]) -> None:
    assert crd["metadata"]["name"] == names.CACHED_IMAGE_CRD
    spec = crd["spec"]
    assert spec["group"] == names.GROUP
    assert spec["scope"] == "Cluster"
    assert spec["names"]["kind"] == names.CACHED_IMAGE_KIND
    assert spec["names"]["plural"] == names.CACHED_IMAGE_PLURAL
    assert "cimg" in spec["names"]["shortNames"]
    [version] = spec["versions"]
    assert version["name"] == names.VERSION
    assert version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}


def test_the_crd_object_itself_validates(crd: dict[str, Any]) -> None:
    kubernetes_validate.validate(crd, "1.31.0", strict=True)


# --- the schema against the TypedDicts -------------------------------------------------------

JSON_TYPES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def assert_type_matches(annotation: Any, node: dict[str, Any], where: str) -> None:
    """The schema node can hold exactly the Python type the code declares."""
    origin = typing.get_origin(annotation)
    if origin in (typing.NotRequired, typing.Required):
        assert_type_matches(typing.get_args(annotation)[0], node, where)
    elif annotation is str and node.get("x-kubernetes-int-or-string"):
        pass  # a quantity: the code writes text, a person may write a number
    elif annotation in JSON_TYPES:
        assert node.get("type") == JSON_TYPES[annotation], where
    elif origin is dict:
        _, value = typing.get_args(annotation)
        assert node.get("type") == "object", where
        if value is Any:
            return
        assert_type_matches(value, node["additionalProperties"], f"{where}.*")
    elif origin is list:
        (item,) = typing.get_args(annotation)
        assert node.get("type") == "array", where
        if item is not Any:
            assert_type_matches(item, node["items"], f"{where}[]")
    elif typing.is_typeddict(annotation):
        assert_typed_dict(annotation, node, where)
    elif isinstance(annotation, types.UnionType):
        raise AssertionError(f"{where}: unions are not expected in the CachedImage shape")
    else:
        raise AssertionError(f"{where}: no JSON type for {annotation!r}")


def assert_typed_dict(cls: Any, node: dict[str, Any], where: str) -> None:
    hints = typing.get_type_hints(cls, include_extras=True)
    assert node.get("type") == "object", where
    assert set(node["properties"]) == set(hints), f"{where}: schema and {cls.__name__} differ"
    for key, annotation in hints.items():
        assert_type_matches(annotation, node["properties"][key], f"{where}.{key}")


def required_keys(cls: Any) -> set[str]:
    """Keys a TypedDict requires (`__required_keys__` misses NotRequired in string annotations)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return {
        key
        for key, annotation in hints.items()
        if cls.__total__ and typing.get_origin(annotation) is not typing.NotRequired
    }


def test_spec_and_status_match_the_typed_dicts(schema: dict[str, Any]) -> None:
    spec = schema["properties"]["spec"]
    assert_typed_dict(cachedimage.CachedImageSpec, spec, "spec")
    assert set(spec["required"]) == required_keys(cachedimage.CachedImageSpec)
    assert spec["properties"]["source"]["enum"] == [
        names.SOURCE_LEARNED,
        names.SOURCE_DECLARED,
        names.SOURCE_OBSERVED,
        names.SOURCE_CATALOG,
    ]
    assert spec["properties"]["profiles"]["maxItems"] == cachedimage.MAX_PROFILES
    assert spec["properties"]["placement"]["enum"] == ["All", "Demand"]
    assert_typed_dict(cachedimage.CachedImageStatus, schema["properties"]["status"], "status")


def test_schema_is_structural(schema: dict[str, Any]) -> None:
    """Every node has a type; nothing that Kubernetes forbids in a structural schema."""

    def visit(node: dict[str, Any], where: str) -> None:
        if node.get("x-kubernetes-int-or-string"):
            # The one union Kubernetes allows, as it writes resource quantities.
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], where
            assert "type" not in node and not {"$ref", "allOf", "oneOf", "not"} & set(node)
            return
        assert "type" in node, f"{where} has no type"
        assert not {"$ref", "allOf", "oneOf", "anyOf", "not"} & set(node), where
        assert not ("properties" in node and "additionalProperties" in node), where
        for key, child in (node.get("properties") or {}).items():
            visit(child, f"{where}.{key}")
        if isinstance(node.get("additionalProperties"), dict):
            visit(node["additionalProperties"], f"{where}.*")
        if "items" in node:
            visit(node["items"], f"{where}[]")

    visit(schema, "")
    assert schema["properties"]["metadata"] == {"type": "object"}


def test_printer_columns_point_at_real_fields(crd: dict[str, Any], schema: dict[str, Any]) -> None:
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in columns] == [
        "Image", "Source", "Score", "Present", "Wanted", "Last Seen", "Age",
    ]  # fmt: skip
    for column in columns:
        path = column["jsonPath"].lstrip(".").split(".")
        if path == ["metadata", "creationTimestamp"]:
            assert column["type"] == "date"
            continue
        node = schema
        for part in path:
            node = node["properties"][part]
        expected = {"string": "string", "integer": "integer", "number": "number"}[node["type"]]
        if node.get("format") == "date-time":
            expected = "date"
        assert column["type"] == expected, column["name"]


# --- samples -------------------------------------------------------------------------------------


def test_learned_and_declared_samples_are_accepted(schema: dict[str, Any]) -> None:
    for sample in (learned_sample(), declared_sample()):
        validate(schema, sample)
        name = sample["metadata"]["name"]
        assert len(name) <= 253 and DNS_SUBDOMAIN.match(name), name


def test_placement_is_optional_and_either_all_or_demand(schema: dict[str, Any]) -> None:
    for placement in ("All", "Demand"):
        sample = declared_sample()
        sample["spec"]["placement"] = placement
        validate(schema, sample)


def test_samples_pass_the_generic_validator_too() -> None:
    """kubernetes-validate does not know our kind: it must say so rather than pass silently."""
    with pytest.raises(kubernetes_validate.utils.SchemaNotFoundError):
        kubernetes_validate.validate(learned_sample(), "1.31.0", strict=True)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda o: o["spec"].update(source="Guessed"), "source outside the enum"),
        (lambda o: o["spec"].pop("image"), "image missing"),
        (lambda o: o["spec"].update(image=""), "empty image"),
        (lambda o: o["spec"].update(profiles=o["spec"]["profiles"] * 9), "more than 16 profiles"),
        (lambda o: o["status"].update(useCount="many"), "count not an integer"),
        (lambda o: o["status"].update(dailyUses={"2026-11-22": "x"}), "daily use not an integer"),
        (lambda o: o["status"].update(lastSeen="yesterday"), "lastSeen not RFC 3339"),
        (lambda o: o["spec"].update(pullSecret="x"), "unknown spec field (pruned in a cluster)"),
        (lambda o: o["spec"]["profiles"][0].update(gpu="yes"), "gpu not a boolean"),
        (
            lambda o: o["spec"]["profiles"][0]["requests"].update(cpu="lots"),
            "request not a quantity",
        ),
        (lambda o: o["spec"]["profiles"][0]["requests"].update(cpu=[1]), "request not a quantity"),
        (lambda o: o["spec"].update(placement="Some"), "placement outside the enum"),
        (lambda o: o.pop("spec"), "spec missing"),
    ],
)
def test_broken_objects_are_refused(schema: dict[str, Any], change: Any, why: str) -> None:
    sample = learned_sample()
    change(sample)
    with pytest.raises(jsonschema.ValidationError):
        validate(schema, sample)

"""The AdmissionReview wire format: parsing with orjson, the reasons of a 400, the patch encoding."""

from __future__ import annotations

import base64
import json

import pytest

from imagesync.mutation import JsonPatchOp
from tests.webhook.pods import HARBOR, deployment_pod, review
from webhook.review import (
    AdmissionRequest,
    GroupVersionKind,
    ReviewError,
    build_response,
    encode_patch,
    parse_review,
)


def test_bytes_and_text_parse_alike() -> None:
    sent = review(deployment_pod(f"{HARBOR}/a/b:1"), namespace="shop")
    text = json.dumps(sent)
    parsed = parse_review(text.encode())
    assert parse_review(text) == parsed
    assert isinstance(parsed, AdmissionRequest)
    assert parsed.uid == sent["request"]["uid"]
    assert parsed.kind == GroupVersionKind(group="", version="v1", kind="Pod")
    assert (parsed.operation, parsed.namespace, parsed.dry_run) == ("CREATE", "shop", False)
    assert parsed.is_pod_create
    assert parsed.obj == sent["request"]["object"]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "body is not valid JSON: unexpected character"),
        (b"", "body is not valid JSON: Input is a zero-length, empty document"),
        (b'{"apiVersion": NaN}', "body is not valid JSON"),
        (b"\xff\xfe garbage", "body is not valid JSON: it is not UTF-8 text"),
        (b"[]", "body must be a JSON object, not list"),
    ],
)
def test_invalid_json_reasons_say_what_is_wrong(raw: bytes, reason: str) -> None:
    with pytest.raises(ReviewError) as caught:
        parse_review(raw)
    assert caught.value.reason.startswith(reason)


def test_the_position_of_a_syntax_error_is_reported() -> None:
    with pytest.raises(ReviewError) as caught:
        parse_review(b'{"apiVersion": "admission.k8s.io/v1",\n "kind": }')
    assert "line 2" in caught.value.reason


def test_integers_beyond_64_bits_in_the_pod_do_not_refuse_the_review() -> None:
    obj = deployment_pod(f"{HARBOR}/a/b:1")
    obj["spec"]["terminationGracePeriodSeconds"] = 2**80
    parsed = parse_review(json.dumps(review(obj)).encode())
    assert parsed.obj is not None and parsed.is_pod_create


def test_patch_encoding_is_compact_json_in_base64() -> None:
    patch = (
        JsonPatchOp(op="replace", path="/spec/containers/0/imagePullPolicy", value="IfNotPresent"),
        JsonPatchOp(op="add", path="/spec/initContainers/1/imagePullPolicy", value="IfNotPresent"),
    )
    encoded = encode_patch(patch)
    assert base64.b64decode(encoded) == json.dumps(list(patch), separators=(",", ":")).encode()
    response = build_response("u-1", patch)
    assert response["response"] == {
        "uid": "u-1",
        "allowed": True,
        "patchType": "JSONPatch",
        "patch": encoded,
    }
    assert build_response("u-2")["response"] == {"uid": "u-2", "allowed": True}

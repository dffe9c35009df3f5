"""AdmissionReview `admission.k8s.io/v1` as typed data: parse, validate, and answer.

The API server sends one review per admission; the answer must carry the same `uid`. This
module knows the wire format and nothing about pods, so the mutation logic never touches
raw JSON envelopes and a malformed review is refused in one place with a reason.

The body is parsed and the patch encoded with `orjson`: decoding a 2-3 KB review was the
largest single cost of a request with the standard library's `json`.

Parsing is bounded before it starts. The API server accepts no request body over 3 MiB,
so no genuine review is larger, and a body is refused unparsed when it holds more JSON
containers and elements than any pod has: 3 MiB of `[],` decodes into a million lists
(about 88 MiB), which a handful of concurrent requests would turn into an out-of-memory kill.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, NotRequired, TypedDict

import orjson

from imagesync.mutation import JsonPatchOp

ADMISSION_API_VERSION = "admission.k8s.io/v1"
ADMISSION_REVIEW_KIND = "AdmissionReview"
OPERATIONS = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})
# DELETE and CONNECT reviews legitimately carry `object: null`.
_OBJECT_OPTIONAL = frozenset({"DELETE", "CONNECT"})
# The API server's own limit on a request body (apiserver MaxRequestBodyBytes).
MAX_BODY_BYTES = 3 * 1024 * 1024
# `[`, `{` and `,` bytes: an upper bound on the values a body decodes into, counted at C
# speed. A large real pod (hundreds of env entries, volumes, a last-applied annotation)
# has a few thousand.
MAX_JSON_PUNCTUATION = 100_000


class ReviewError(ValueError):
    """A request body that is not a usable AdmissionReview; `reason` goes into the HTTP 400."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class GroupVersionKind(NamedTuple):
    group: str
    version: str
    kind: str


class AdmissionRequest(NamedTuple):
    """The part of `request` the webhook uses; `obj` is the object as sent (never modified).

    A NamedTuple rather than a frozen dataclass: just as immutable, and built in less than
    half the time, which counts once per admission.
    """

    uid: str
    kind: GroupVersionKind
    resource: str
    sub_resource: str
    operation: str
    namespace: str
    name: str
    dry_run: bool
    obj: Mapping[str, Any] | None

    @property
    def is_pod_create(self) -> bool:
        """Only a Pod CREATE (not a subresource such as `pods/binding`) is ever mutated."""
        return (
            self.operation == "CREATE"
            and self.kind.group == ""
            and self.kind.kind == "Pod"
            and not self.sub_resource
            and self.obj is not None
        )


class AdmissionStatus(TypedDict):
    code: int
    reason: str
    message: str


class AdmissionResponse(TypedDict):
    uid: str
    allowed: bool
    status: NotRequired[AdmissionStatus]
    patchType: NotRequired[str]
    patch: NotRequired[str]
    warnings: NotRequired[list[str]]


class AdmissionReviewResponse(TypedDict):
    apiVersion: str
    kind: str
    response: AdmissionResponse


def _string(mapping: Mapping[str, Any], key: str, where: str, required: bool = True) -> str:
    value = mapping.get(key)
    if isinstance(value, str) and value:  # the usual case, tested first
        return value
    if value is None or value == "":
        if required:
            raise ReviewError(f"{where}.{key} is missing")
        return ""
    if not isinstance(value, str):
        raise ReviewError(f"{where}.{key} must be a string, not {type(value).__name__}")
    return value


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    # JSON objects decode to dict; the exact check is also much cheaper than the ABC.
    if not isinstance(value, dict):
        found = "null" if value is None else type(value).__name__
        raise ReviewError(f"{where} must be a JSON object, not {found}")
    return value


def _parse_gvk(value: Any, where: str) -> GroupVersionKind:
    gvk = _mapping(value, where)
    return GroupVersionKind(
        _string(gvk, "group", where, required=False),
        _string(gvk, "version", where),
        _string(gvk, "kind", where),
    )


def _parse_resource(value: Any, where: str) -> str:
    if value is None:
        return ""
    return _string(_mapping(value, where), "resource", where, required=False)


def _json_error(exc: ValueError) -> str:
    # orjson words every encoding error as "str is not valid UTF-8: surrogates not allowed",
    # even for bytes; say what it means for a request body.
    if "UTF-8" in str(exc):
        return "body is not valid JSON: it is not UTF-8 text"
    return f"body is not valid JSON: {exc}"


def parse_review(body: bytes | str) -> AdmissionRequest:
    """Parse a request body; raise ReviewError with a reason fit for the caller's eyes."""
    raw = body.encode() if isinstance(body, str) else body
    if len(raw) > MAX_BODY_BYTES:
        raise ReviewError(f"body larger than {MAX_BODY_BYTES} bytes, the API server's own limit")
    punctuation = raw.count(b"[") + raw.count(b"{") + raw.count(b",")
    if punctuation > MAX_JSON_PUNCTUATION:
        raise ReviewError(
            f"body holds more than {MAX_JSON_PUNCTUATION} JSON containers and elements; "
            "no pod has that many"
        )
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ReviewError(_json_error(exc)) from None
    review = _mapping(document, "body")
    api_version = review.get("apiVersion")
    if api_version != ADMISSION_API_VERSION:
        raise ReviewError(
            f"apiVersion must be {ADMISSION_API_VERSION}, not {api_version!r} "
            "(set admissionReviewVersions: [v1])"
        )
    kind = review.get("kind")
    if kind != ADMISSION_REVIEW_KIND:
        raise ReviewError(f"kind must be {ADMISSION_REVIEW_KIND}, not {kind!r}")
    request = review.get("request")
    if request is None:
        raise ReviewError("request is missing")
    request = _mapping(request, "request")
    uid = _string(request, "uid", "request")
    operation = _string(request, "operation", "request")
    if operation not in OPERATIONS:
        raise ReviewError(f"request.operation {operation!r} is not one of {sorted(OPERATIONS)}")
    obj = request.get("object")
    if obj is None:
        if operation not in _OBJECT_OPTIONAL:
            raise ReviewError(f"request.object is missing (required for {operation})")
    else:
        obj = _mapping(obj, "request.object")
    dry_run = request.get("dryRun", False)
    if dry_run is None:
        dry_run = False
    if not isinstance(dry_run, bool):
        raise ReviewError("request.dryRun must be a boolean")
    return AdmissionRequest(
        uid=uid,
        kind=_parse_gvk(request.get("kind"), "request.kind"),
        resource=_parse_resource(request.get("resource"), "request.resource"),
        sub_resource=_string(request, "subResource", "request", required=False),
        operation=operation,
        namespace=_string(request, "namespace", "request", required=False),
        name=_string(request, "name", "request", required=False),
        dry_run=dry_run,
        obj=obj,
    )


def encode_patch(patch: Sequence[JsonPatchOp]) -> str:
    """A JSONPatch as the base64 string AdmissionResponse.patch carries."""
    return base64.b64encode(orjson.dumps(list(patch))).decode()


def build_response(
    uid: str,
    patch: Sequence[JsonPatchOp] = (),
    warnings: Sequence[str] = (),
) -> AdmissionReviewResponse:
    """Always `allowed: true`: this webhook only ever adjusts pods, it never refuses one.

    `patchType`/`patch` appear only when the patch is non-empty, so "nothing changed" is an
    answer the API server does not have to decode.
    """
    response: AdmissionResponse = {"uid": uid, "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = encode_patch(patch)
    if warnings:
        response["warnings"] = list(warnings)
    return {
        "apiVersion": ADMISSION_API_VERSION,
        "kind": ADMISSION_REVIEW_KIND,
        "response": response,
    }


def build_refusal(uid: str, message: str) -> AdmissionReviewResponse:
    """`allowed: false` with a 403 and `message`, which the API server hands to the client."""
    return {
        "apiVersion": ADMISSION_API_VERSION,
        "kind": ADMISSION_REVIEW_KIND,
        "response": {
            "uid": uid,
            "allowed": False,
            "status": {"code": 403, "reason": "Forbidden", "message": message},
        },
    }

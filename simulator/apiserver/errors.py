"""API errors as the real server reports them: an HTTP code plus a `Status` object."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error answer; `status()` is the `Status` body a Kubernetes client decodes."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        kind: str = "",
        group: str = "",
        name: str = "",
        causes: list[dict[str, str]] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.kind = kind
        self.group = group
        self.name = name
        self.causes = causes or []
        self.retry_after = retry_after

    def status(self) -> dict[str, Any]:
        """The `Status` object, shaped like the real server's."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        details: dict[str, Any] = {}
        if self.name:
            details["name"] = self.name
        if self.group:
            details["group"] = self.group
        if self.kind:
            details["kind"] = self.kind
        if self.causes:
            details["causes"] = self.causes
        if self.retry_after is not None:
            details["retryAfterSeconds"] = self.retry_after
        if details:
            body["details"] = details
        return body


def success_status(
    *, name: str = "", kind: str = "", group: str = "", uid: str = "", code: int = 0
) -> dict[str, Any]:
    """The `Status` a delete or a binding returns when there is no object to show."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
    }
    details: dict[str, Any] = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    if kind:
        details["kind"] = kind
    if uid:
        details["uid"] = uid
    if details:
        body["details"] = details
    if code:
        body["code"] = code
    return body


def _qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{_qualified(plural, group)} "{name}" not found',
        kind=plural,
        group=group,
        name=name,
    )


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{_qualified(plural, group)} "{name}" already exists',
        kind=plural,
        group=group,
        name=name,
    )


def conflict(plural: str, group: str, name: str, why: str) -> ApiError:
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(plural, group)} "{name}": {why}',
        kind=plural,
        group=group,
        name=name,
    )


def invalid(kind: str, group: str, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """422 Invalid; each cause is (reason like FieldValueRequired, field, message)."""
    text = ", ".join(f"{field}: {msg}" for _, field, msg in causes)
    if len(causes) > 1:
        text = f"[{text}]"  # the real server's aggregate of several errors
    return ApiError(
        422,
        "Invalid",
        f'{kind}{"." + group if group else ""} "{name}" is invalid: {text}',
        kind=kind,
        group=group,
        name=name,
        causes=[{"reason": r, "field": f, "message": m} for r, f, m in causes],
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(
    message: str = "the server does not allow this method on the requested resource",
) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


PATCH_TYPES = (
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    ", application/strategic-merge-patch+json"
)


def unsupported_media_type(content_type: str, accepted: str = PATCH_TYPES) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: {accepted} (got {content_type!r})",
    )


def expired(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def forbidden(plural: str, group: str, name: str, why: str) -> ApiError:
    return ApiError(
        403,
        "Forbidden",
        f'{_qualified(plural, group)} "{name}" is forbidden: {why}',
        kind=plural,
        group=group,
        name=name,
    )


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}")


def too_many_requests(retry_after: int) -> ApiError:
    return ApiError(
        429,
        "TooManyRequests",
        "the server has received too many requests and has asked us to try again later",
        retry_after=retry_after,
    )

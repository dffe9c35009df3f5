"""Custom resources checked and pruned against their CRD's `openAPIV3Schema`, as the real
server does: a wrong type, an unsupported value or a missing required field is `422 Invalid`
with one cause per error, and fields the schema does not declare are dropped."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft7Validator, ValidationError

from .errors import invalid

Obj = dict[str, Any]

_REASONS = {
    "type": "FieldValueTypeInvalid",
    "enum": "FieldValueNotSupported",
    "required": "FieldValueRequired",
    "maxLength": "FieldValueTooLong",
    "maxItems": "FieldValueTooMany",
    "maxProperties": "FieldValueTooMany",
}
_JSON_TYPES = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
)
_TOP_LEVEL = ("apiVersion", "kind", "metadata")


def _as_json_schema(schema: Any) -> Any:
    """The structural schema as JSON Schema: `nullable` allows null, int-or-string drops the
    type; the `x-kubernetes-*` keys are left for `prune`."""
    if isinstance(schema, list):
        return [_as_json_schema(s) for s in schema]
    if not isinstance(schema, Mapping):
        return schema
    out = {k: _as_json_schema(v) for k, v in schema.items()}
    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
    elif out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return next(name for kind, name in _JSON_TYPES if isinstance(value, kind))


def _quoted(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else f'"{json.dumps(value)}"'


def _cause(error: ValidationError) -> tuple[str, str, str]:
    path = [str(p) for p in error.absolute_path]
    reason = _REASONS.get(str(error.validator), "FieldValueInvalid")
    if error.validator == "required":
        present = error.instance if isinstance(error.instance, Mapping) else {}
        missing = next((r for r in error.validator_value if r not in present), "")
        return reason, ".".join([*path, missing]), "Required value"
    field = ".".join(path)
    if error.validator == "type":
        got = _type_name(error.instance)
        return (
            reason,
            field,
            f'Invalid value: "{got}": {field} in body must be of type {error.validator_value}: "{got}"',
        )
    if error.validator == "enum":
        supported = ", ".join(json.dumps(v) for v in error.validator_value)
        return (
            reason,
            field,
            f"Unsupported value: {_quoted(error.instance)}: supported values: {supported}",
        )
    return reason, field, f"Invalid value: {_quoted(error.instance)}: {error.message}"


def prune(value: Any, schema: Any) -> Any:
    """`value` without the object fields `schema` does not declare."""
    if not isinstance(schema, Mapping) or schema.get("x-kubernetes-preserve-unknown-fields"):
        return value
    if isinstance(value, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        if isinstance(properties, Mapping):
            return {k: prune(v, properties[k]) for k, v in value.items() if k in properties}
        if isinstance(extra, Mapping):
            return {k: prune(v, extra) for k, v in value.items()}
        return value
    if isinstance(value, list):
        return [prune(item, schema.get("items")) for item in value]
    return value


def validator_for(schema: Mapping[str, Any] | None) -> Draft7Validator | None:
    """Built once per served version of a CRD."""
    return Draft7Validator(_as_json_schema(schema)) if schema else None


def check(
    kind: str,
    group: str,
    schema: Mapping[str, Any] | None,
    validator: Draft7Validator | None,
    obj: Obj,
) -> Obj:
    """`obj` pruned to `schema`; `422 Invalid` naming every field that breaks it."""
    if not schema or validator is None:
        return obj
    body = {k: v for k, v in obj.items() if k not in _TOP_LEVEL}
    pruned = prune(body, schema)
    errors = sorted(validator.iter_errors(pruned), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        raise invalid(
            kind, group, str(obj["metadata"].get("name", "")), [_cause(e) for e in errors]
        )
    return {**{k: obj[k] for k in _TOP_LEVEL if k in obj}, **pruned}

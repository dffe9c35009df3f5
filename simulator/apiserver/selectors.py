"""Label and field selectors: the query-string syntax and metav1.LabelSelector, as pure functions."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ApiError, bad_request

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VALUE = r"[-A-Za-z0-9_.]*"
_TOKEN = re.compile(
    rf"\s*(?:(?P<notexists>!\s*{_KEY})"
    rf"|(?P<set>{_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^)]*)\)"
    rf"|(?P<cmp>{_KEY})\s*(?P<cmpop>==|=|!=|>|<)\s*(?P<value>{_VALUE})"
    rf"|(?P<exists>{_KEY}))\s*(?:,|$)"
)


@dataclass(frozen=True)
class Requirement:
    """One clause of a label selector."""

    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", ">", "<"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        if self.op in (">", "<"):
            try:
                have, want = float(value or ""), float(self.values[0])
            except ValueError:
                return False
            return have > want if self.op == ">" else have < want
        return False


@dataclass(frozen=True)
class LabelSelector:
    """A parsed `labelSelector` query parameter; empty matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


def parse_label_selector(text: str) -> LabelSelector:
    """Parse `a=b,c!=d,e in (f,g),h notin (i),j,!k` (raises 400 BadRequest on junk)."""
    text = text.strip()
    reqs: list[Requirement] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise bad_request(f"unable to parse requirement: {text[pos:]!r}")
        pos = m.end()
        if m.group("notexists"):
            reqs.append(Requirement(m.group("notexists")[1:].strip(), "!"))
        elif m.group("set"):
            values = tuple(v.strip() for v in m.group("values").split(",") if v.strip())
            reqs.append(Requirement(m.group("set"), m.group("op"), values))
        elif m.group("cmp"):
            op = m.group("cmpop")
            op = "=" if op == "==" else op
            reqs.append(Requirement(m.group("cmp"), op, (m.group("value"),)))
        else:
            reqs.append(Requirement(m.group("exists"), "exists"))
    return LabelSelector(tuple(reqs))


@dataclass(frozen=True)
class FieldRequirement:
    path: str
    value: str
    negate: bool


@dataclass(frozen=True)
class FieldSelector:
    """A parsed `fieldSelector`: `path=value` / `path!=value` clauses, ANDed."""

    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        for req in self.requirements:
            equal = field_value(obj, req.path) == req.value
            if equal == req.negate:
                return False
        return True

    def exact(self, path: str) -> str | None:
        """The value a clause `path=value` pins, for index lookups (e.g. spec.nodeName)."""
        for req in self.requirements:
            if req.path == path and not req.negate:
                return req.value
        return None

    @property
    def empty(self) -> bool:
        return not self.requirements


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i : i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_field_selector(text: str, supported: tuple[str, ...]) -> FieldSelector:
    """Parse a field selector; fields outside `supported` (plus metadata.name/namespace) are 400."""
    reqs: list[FieldRequirement] = []
    allowed = {"metadata.name", "metadata.namespace", *supported}
    for clause in _split_unescaped(text.strip(), ","):
        clause = clause.strip()
        if not clause:
            continue
        m = re.match(r"^([^=!]+?)\s*(==|!=|=)\s*(.*)$", clause)
        if m is None:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{clause}'")
        path, op, value = m.group(1).strip(), m.group(2), _unescape(m.group(3).strip())
        if path not in allowed:
            raise bad_request(f"field label not supported: {path}")
        reqs.append(FieldRequirement(path, value, op == "!="))
    return FieldSelector(tuple(reqs))


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string form a field selector compares against ("" when absent)."""
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(part)
    if cur is None:
        return "false" if path == "spec.unschedulable" or path == "spec.hostNetwork" else ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if isinstance(cur, Mapping):  # event source: {component: x}
        return str(cur.get("component", ""))
    return str(cur)


def match_label_selector_object(
    selector: Mapping[str, Any] | None, labels: Mapping[str, str] | None
) -> bool:
    """metav1.LabelSelector semantics (matchLabels + matchExpressions); None/{} matches all."""
    labels = labels or {}
    if not selector:
        return True
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
        if op == "In":
            ok = key in labels and labels[key] in values
        elif op == "NotIn":
            ok = key not in labels or labels[key] not in values
        elif op == "Exists":
            ok = key in labels
        elif op == "DoesNotExist":
            ok = key not in labels
        else:
            raise ApiError(422, "Invalid", f"{op!r} is not a valid label selector operator")
        if not ok:
            return False
    return True

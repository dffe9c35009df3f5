"""Properties of the pure parts: patches and selectors agree with their specifications."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.apiserver.patching import json_merge_patch, strategic_merge_patch
from simulator.apiserver.selectors import parse_label_selector

keys = st.sampled_from(["a", "b", "c", "d"])
scalars = st.one_of(st.integers(-5, 5), st.sampled_from(["x", "y", ""]), st.booleans())
values = st.recursive(scalars, lambda inner: st.dictionaries(keys, inner, max_size=3), max_leaves=8)
documents = st.dictionaries(keys, values, max_size=4)
patches = st.dictionaries(keys, st.one_of(st.none(), values), max_size=4)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(documents, patches)
def test_strategic_patch_without_lists_is_a_merge_patch(
    doc: dict[str, Any], patch: dict[str, Any]
) -> None:
    assert strategic_merge_patch(doc, patch, "ConfigMap") == json_merge_patch(doc, patch)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(documents, patches)
def test_merge_patch_is_idempotent(doc: dict[str, Any], patch: dict[str, Any]) -> None:
    once = json_merge_patch(doc, patch)
    assert json_merge_patch(once, patch) == once


label_keys = st.sampled_from(["app", "tier", "example.com/team"])
label_values = st.sampled_from(["web", "db", "x-1"])
label_sets = st.dictionaries(label_keys, label_values, max_size=3)


@st.composite
def requirements(draw: st.DrawFn) -> tuple[str, Any]:
    key = draw(label_keys)
    op = draw(st.sampled_from(["=", "==", "!=", "in", "notin", "exists", "!"]))
    vals = draw(st.lists(label_values, min_size=1, max_size=2, unique=True))
    if op in ("in", "notin"):
        text = f"{key} {op} ({','.join(vals)})"
    elif op == "exists":
        text = key
    elif op == "!":
        text = f"!{key}"
    else:
        text = f"{key}{op}{vals[0]}"

    def check(labels: dict[str, str]) -> bool:
        if op in ("=", "=="):
            return labels.get(key) == vals[0]
        if op == "!=":
            return labels.get(key) != vals[0]
        if op == "in":
            return key in labels and labels[key] in vals
        if op == "notin":
            return labels.get(key) not in vals
        if op == "exists":
            return key in labels
        return key not in labels

    return text, check


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(requirements(), min_size=1, max_size=3), label_sets)
def test_label_selectors_follow_their_definition(
    reqs: list[tuple[str, Any]], labels: dict[str, str]
) -> None:
    selector = parse_label_selector(",".join(text for text, _ in reqs))
    assert selector.matches(labels) == all(check(labels) for _, check in reqs)

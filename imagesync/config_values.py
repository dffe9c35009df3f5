"""Parsers of single config values: YAML or environment text in, a typed value or ValueError out."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import yaml

from imagesync.matching import RegistryPrefix, parse_prefix
from imagesync.quantities import parse_bandwidth, parse_duration, parse_size
from imagesync.sources import DEFAULT_SOURCE_ORDER, SourceRule, parse_rules, parse_source_names
from imagesync.templates import TemplateKind, parse_template_kind

T = TypeVar("T")


def _yaml_text(value: Any, empty: Any) -> Any:
    """A string from the environment read as YAML (blank text is `empty`); anything else as is."""
    if not isinstance(value, str):
        return value
    try:
        return yaml.safe_load(value) if value.strip() else empty
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {exc}") from None


def _each(items: Any, parse: Callable[[Any], T]) -> tuple[T, ...]:
    """Every item parsed, an error naming the index of the first bad one."""
    parsed = []
    for index, item in enumerate(items):
        try:
            parsed.append(parse(item))
        except ValueError as exc:
            raise ValueError(f"[{index}]: {exc}") from None
    return tuple(parsed)


def registry_bandwidths(value: Any) -> tuple[tuple[str, float], ...]:
    """`{registry host: bandwidth}` as sorted (host, bytes per second) pairs (a string from
    the environment is read as YAML)."""
    value = _yaml_text(value, {})
    if not isinstance(value, Mapping):
        raise ValueError(f'expected a map like {{"harbor.example.com": "10Gbit/s"}}, got {value!r}')
    out: dict[str, float] = {}
    for host, bandwidth in value.items():
        if not isinstance(host, str) or not host or "/" in host:
            raise ValueError(f"expected a registry host as key, got {host!r}")
        try:
            out[host.lower()] = parse_bandwidth(bandwidth)
        except ValueError as exc:
            raise ValueError(f"{host}: {exc}") from None
    return tuple(sorted(out.items()))


def node_selector(value: Any) -> tuple[tuple[str, str], ...] | None:
    """`{label: value}` as sorted pairs; `{}` selects every node, null (the default) none (a
    string from the environment is read as YAML)."""
    value = _yaml_text(value, None)
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError(f'expected a map of node labels like {{"pool": "gpu"}}, got {value!r}')
    return tuple(sorted(value.items()))


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"true", "yes", "on", "1"}:
        return True
    if text in {"false", "no", "off", "0"}:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def parse_str_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
        return tuple(item for item in items if item)
    if isinstance(value, list | tuple):
        if not all(isinstance(item, str) for item in value):
            raise ValueError(f"expected a list of strings, got {value!r}")
        return tuple(item.strip() for item in value)
    raise ValueError(f"expected a list of strings, got {value!r}")


def parse_prefixes(value: Any) -> tuple[RegistryPrefix, ...]:
    return _each(parse_str_list(value), parse_prefix)


def one_of(*allowed: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip()
        if text not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {value!r}")
        return text

    return parse


def number(minimum: float, maximum: float | None = None) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {value!r}") from None
        if number < minimum or (maximum is not None and number > maximum):
            bound = (
                f"between {minimum:g} and {maximum:g}" if maximum is not None else f">= {minimum:g}"
            )
            raise ValueError(f"expected a number {bound}, got {value!r}")
        return number

    return parse


def integer(minimum: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(f"expected a whole number, got {value!r}")
        try:
            number = int(str(value).strip()) if not isinstance(value, int) else value
        except ValueError:
            raise ValueError(f"expected a whole number, got {value!r}") from None
        if number < minimum:
            raise ValueError(f"expected a whole number >= {minimum}, got {value!r}")
        return number

    return parse


def plain_text(value: Any) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError(f"expected a string, got {value!r}")
    return str(value).strip()


def quiet_hours(value: Any) -> str:
    """`""` or `HH:MM-HH:MM` (UTC; may wrap past midnight)."""
    text = plain_text(value)
    if text and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d", text):
        raise ValueError(f'expected "" or a UTC window like 08:00-18:00, got {value!r}')
    return text


def parse_template_kinds(value: Any) -> tuple[TemplateKind, ...]:
    """A YAML list of `{apiVersion, kind, resource, templatePaths}` (a string from the
    environment is read as YAML)."""
    value = _yaml_text(value, [])
    if not isinstance(value, list):
        raise ValueError(f"expected a list of kinds, got {value!r}")
    return _each(value, parse_template_kind)


def positive_size(value: Any) -> int:
    size = parse_size(value)
    if size <= 0:
        raise ValueError(f"expected a size above zero, got {value!r}")
    return size


def source_rules(value: Any) -> tuple[SourceRule, ...]:
    return parse_rules(value, parse_duration)


def source_order(value: Any) -> tuple[str, ...]:
    order = parse_source_names(value)
    missing = [s for s in DEFAULT_SOURCE_ORDER if s not in order]
    if missing:
        raise ValueError(f"must name every source; missing {', '.join(missing)}")
    return order

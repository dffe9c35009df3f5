"""The one configuration object: a YAML file (`IMAGE_SYNC_CONFIG`) overridden by `IMAGE_SYNC_*`.

Every key is validated once, at start-up, with an error that names the key, so a typo in a
ConfigMap fails the rollout loudly instead of silently running with a default.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from imagesync.matching import RegistryPrefix, parse_prefix
from imagesync.names import (
    GPU_PRESENT_LABEL,
    IMAGE,
    KEEPER_PRIORITY_CLASS,
    LABEL_ARCH,
    LABEL_INSTANCE_TYPE,
    POD_NAMESPACE_DEFAULT,
)
from imagesync.sources import (
    DEFAULT_CATALOG_TAGS,
    DEFAULT_SOURCE_ORDER,
    DEFAULT_SOURCES,
    SourceRule,
    parse_rules,
    parse_source_names,
    under_registries,
)
from imagesync.templates import TemplateKind, parse_template_kind

CONFIG_ENV = "IMAGE_SYNC_CONFIG"
ENV_PREFIX = "IMAGE_SYNC_"
DEFAULT_NAMESPACE = "image-sync"
EXPLICIT_ALWAYS_REWRITE = "rewrite"
EXPLICIT_ALWAYS_KEEP = "keep"
DEFAULT_POD_NAMESPACE = POD_NAMESPACE_DEFAULT


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the key."""


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "ki": 1024,
    "kib": 1024,
    "mi": 1024**2,
    "mib": 1024**2,
    "gi": 1024**3,
    "gib": 1024**3,
    "ti": 1024**4,
    "tib": 1024**4,
}


def parse_duration(value: Any) -> float:
    """Seconds from `90`, `90s`, `30m`, `1h30m`, `14d`, `250ms`."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 30m, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"expected a non-negative duration, got {value!r}")
        return float(value)
    text = str(value).strip()
    if not text:
        raise ValueError("expected a duration like 30m, got an empty string")
    pos, total = 0, 0.0
    for match in _DURATION_RE.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        try:
            return parse_duration(float(text))
        except ValueError:
            raise ValueError(
                f"expected a duration like 90s, 30m, 1h30m or 14d, got {value!r}"
            ) from None
    return total


def parse_size(value: Any) -> int:
    """Bytes from `512Mi`, `20GB`, `1.5G`, or a plain number."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 20Gi, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"expected a non-negative size, got {value!r}")
        return int(value)
    match = _SIZE_RE.match(str(value).strip())
    if not match:
        raise ValueError(f"expected a size like 512Mi or 20GB, got {value!r}")
    unit = (match.group(2) or "").lower()
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


_BANDWIDTH_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?)(b|bps|B|Bps)?(?:/s)?\s*$", re.I)
_BANDWIDTH_UNITS = {
    "": 1.0,
    "k": 1e3,
    "m": 1e6,
    "g": 1e9,
    "t": 1e12,
    "ki": 1024.0,
    "mi": 1024.0**2,
    "gi": 1024.0**3,
    "ti": 1024.0**4,
}


def parse_bandwidth(value: Any) -> float:
    """Bytes per second from `100MB/s`, `10Gbit/s`, `1Gbps` (bits), `50MiB/s` or a number of
    bytes."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"bandwidth must be positive, got {value!r}")
        return float(value)
    text = str(value).replace("bit/s", "bps")
    match = _BANDWIDTH_RE.match(text)
    if not match:
        raise ValueError(f"expected a bandwidth like 100MB/s or 10Gbit/s, got {value!r}")
    number = float(match.group(1)) * _BANDWIDTH_UNITS[match.group(2).lower()]
    if (match.group(3) or "B") in ("b", "bps"):
        number /= 8
    if number <= 0:
        raise ValueError(f"bandwidth must be positive, got {value!r}")
    return number


def _registry_bandwidths(value: Any) -> tuple[tuple[str, float], ...]:
    """`{registry host: bandwidth}` as sorted (host, bytes per second) pairs (a string from
    the environment is read as YAML)."""
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value) if value.strip() else {}
        except yaml.YAMLError as exc:
            raise ValueError(f"not valid YAML: {exc}") from None
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


def _node_selector(value: Any) -> tuple[tuple[str, str], ...] | None:
    """`{label: value}` as sorted pairs; `{}` selects every node, null (the default) none (a
    string from the environment is read as YAML)."""
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError as exc:
            raise ValueError(f"not valid YAML: {exc}") from None
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError(f'expected a map of node labels like {{"pool": "gpu"}}, got {value!r}')
    return tuple(sorted(value.items()))


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"true", "yes", "on", "1"}:
        return True
    if text in {"false", "no", "off", "0"}:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _parse_str_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
        return tuple(item for item in items if item)
    if isinstance(value, list | tuple):
        if not all(isinstance(item, str) for item in value):
            raise ValueError(f"expected a list of strings, got {value!r}")
        return tuple(item.strip() for item in value)
    raise ValueError(f"expected a list of strings, got {value!r}")


def _parse_prefixes(value: Any) -> tuple[RegistryPrefix, ...]:
    items = _parse_str_list(value)
    prefixes = []
    for index, item in enumerate(items):
        try:
            prefixes.append(parse_prefix(item))
        except ValueError as exc:
            raise ValueError(f"[{index}]: {exc}") from None
    return tuple(prefixes)


def _choice(*allowed: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).strip()
        if text not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {value!r}")
        return text

    return parse


def _number(minimum: float, maximum: float | None = None) -> Callable[[Any], float]:
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


def _integer(minimum: int) -> Callable[[Any], int]:
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


def _text(value: Any) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError(f"expected a string, got {value!r}")
    return str(value).strip()


def _quiet_hours(value: Any) -> str:
    """`""` or `HH:MM-HH:MM` (UTC; may wrap past midnight)."""
    text = _text(value)
    if text and not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d", text):
        raise ValueError(f'expected "" or a UTC window like 08:00-18:00, got {value!r}')
    return text


def _parse_template_kinds(value: Any) -> tuple[TemplateKind, ...]:
    """A YAML list of `{apiVersion, kind, resource, templatePaths}` (a string from the
    environment is read as YAML)."""
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value) if value.strip() else []
        except yaml.YAMLError as exc:
            raise ValueError(f"not valid YAML: {exc}") from None
    if not isinstance(value, list):
        raise ValueError(f"expected a list of kinds, got {value!r}")
    kinds = []
    for index, item in enumerate(value):
        try:
            kinds.append(parse_template_kind(item))
        except ValueError as exc:
            raise ValueError(f"[{index}]: {exc}") from None
    return tuple(kinds)


def _positive_size(value: Any) -> int:
    size = parse_size(value)
    if size <= 0:
        raise ValueError(f"expected a size above zero, got {value!r}")
    return size


def _source_rules(value: Any) -> tuple[SourceRule, ...]:
    return parse_rules(value, parse_duration)


def _source_order(value: Any) -> tuple[str, ...]:
    order = parse_source_names(value)
    missing = [s for s in DEFAULT_SOURCE_ORDER if s not in order]
    if missing:
        raise ValueError(f"must name every source; missing {', '.join(missing)}")
    return order


def _key(parser: Callable[[Any], Any], default: Any, doc: str) -> Any:
    """A config field; its YAML key is the camelCase of its name, its variable IMAGE_SYNC_<NAME>."""
    return field(default=default, metadata={"parse": parser, "doc": doc})


@dataclass(frozen=True)
class Config:
    """Read once per process by `load_config`; pass it down, never re-read it."""

    # --- shared -------------------------------------------------------------------------
    registries: tuple[RegistryPrefix, ...] = _key(
        _parse_prefixes,
        (RegistryPrefix("nvcr.io", ("nvidia",)),),
        "Registry prefixes whose images image-sync manages (whole path segments).",
    )
    mode: str = _key(
        _choice("opt-out", "opt-in"),
        "opt-out",
        "opt-out: every pod unless it opts out; opt-in: only pods annotated image-sync.io/enabled=true.",
    )
    namespace: str = _key(
        _text, DEFAULT_NAMESPACE, "Where image-sync's components and the prefetcher's Lease live."
    )
    log_level: str = _key(_choice("debug", "info", "warning", "error"), "info", "Log verbosity.")
    log_format: str = _key(
        _choice("text", "json"),
        "text",
        "Log lines: text for people, or json (one object per line: time, level, logger, message, fields).",
    )

    # --- webhook ------------------------------------------------------------------------
    rewrite_latest: bool = _key(
        _parse_bool,
        False,
        "Also rewrite an unset pull policy on :latest or untagged images (Kubernetes treats it as Always).",
    )
    explicit_always: str = _key(
        _choice(EXPLICIT_ALWAYS_REWRITE, EXPLICIT_ALWAYS_KEEP),
        EXPLICIT_ALWAYS_REWRITE,
        "An Always written on a tagged, non-latest image without a digest: rewrite it to IfNotPresent (tags under your registries are immutable), or keep it (tags get rebuilt).",
    )
    learn_flush_interval: float = _key(
        parse_duration,
        2.0,
        "How often a webhook worker writes the images it saw to CachedImage objects.",
    )
    learn_max_pending: int = _key(
        _integer(1),
        5000,
        "Distinct images a webhook worker holds before a flush; beyond it new images are dropped and counted.",
    )

    learn_max_pending_bytes: int = _key(
        _positive_size,
        8 * 1024 * 1024,
        "Placement profiles (as JSON) a webhook worker holds before a flush; beyond it new profiles are dropped and counted, their uses still count.",
    )

    # --- prefetcher ---------------------------------------------------------------------
    sweep_interval: float = _key(parse_duration, 1800.0, "Full resync sweep period.")
    image_retention: float = _key(
        parse_duration,
        14 * 86400.0,
        "A learned image unused for this long stops being wanted and is released.",
    )
    score_half_life: float = _key(
        parse_duration,
        3 * 86400.0,
        "Half-life of a day's uses in an image's score (recent use outweighs old use).",
    )
    disk_budget: float = _key(
        _number(0.0, 1.0),
        0.5,
        "Share of a node's image filesystem that prefetched images may fill.",
    )
    image_gc_high_threshold: float = _key(
        _number(1.0, 100.0),
        85.0,
        "The kubelet's imageGCHighThresholdPercent; the budget never reaches past it.",
    )
    image_gc_low_threshold: float = _key(
        _number(1.0, 100.0),
        80.0,
        "The kubelet's imageGCLowThresholdPercent: high - low is the band a new image must "
        "leave free below the budget (what is held stays up to it), so the keeper does not churn.",
    )
    budget_hold: float = _key(
        parse_duration,
        86400.0,
        "After a node's workload pods used an image, its bytes stay out of the node's budget "
        "for this long, so the budget grows back only once the pods have needed less room "
        "for that long; 0 turns the hold off.",
    )
    max_concurrent_pulls: int = _key(_integer(1), 50, "Puller pods running at once, cluster-wide.")
    max_pulls_per_registry: int = _key(
        _integer(1), 20, "Puller pods running at once against one registry host."
    )
    registry_bandwidth: tuple[tuple[str, float], ...] = _key(
        _registry_bandwidths,
        (),
        'Known bandwidth per registry host, e.g. {"harbor.example.com": "10Gbit/s"}: while '
        "workload pods pull from it, prefetches are throttled to prefetchBandwidthShare of it "
        "instead of paused.",
    )
    prefetch_bandwidth_share: float = _key(
        _number(0.01, 1.0),
        0.5,
        "Share of a registry's known bandwidth (registryBandwidth) prefetches may hold while "
        "workload pods pull from it; the rest is left to them.",
    )
    max_pulls_per_image: int = _key(_integer(1), 10, "Puller pods running at once for one image.")
    max_pulls_per_node: int = _key(
        _integer(1),
        1,
        "Puller pods at once on one node (the kubelet pulls one image at a time by default).",
    )
    parallel_pull_nodes: tuple[tuple[str, str], ...] | None = _key(
        _node_selector,
        None,
        "Nodes (a label map; {} for all) whose kubelets pull images in parallel "
        "(serializeImagePulls: false, maxParallelImagePulls at least maxPullsPerNode + 2): there "
        "a node's next puller starts beside the one in flight, so a puller's start and end "
        "overlap the other's pulls, and a workload pull still finds a free slot. Unset: none.",
    )
    pull_batch_size: int = _key(
        _integer(1),
        10,
        "Images one puller pod pulls, one after another (fewer pods and API writes per image).",
    )
    join_pull_batch_size: int = _key(
        _integer(1),
        500,
        "Images one puller pod pulls on a node that joined or turned Ready within urgentWindow "
        "while no workload pod starts there: its pulls follow one another with no puller's "
        "start and end between them (up to 500, everything a node usually needs: one puller, "
        "as one keeper holds them).",
    )
    quiet_hours: str = _key(
        _quiet_hours,
        "",
        'UTC window like "08:00-18:00" in which only urgent pulls start; "" for none.',
    )
    urgent_window: float = _key(
        parse_duration,
        3600.0,
        "A node that joined or turned Ready, or an image first seen, this recently is urgent.",
    )
    pull_deadline_base: float = _key(
        parse_duration, 600.0, "Fixed part of the deadline of each image a puller pulls."
    )
    pull_deadline_min_bandwidth: int = _key(
        _positive_size,
        10_000_000,
        "Slowest expected pull rate in bytes per second; the deadline adds size ÷ this.",
    )
    pull_backoff_base: float = _key(
        parse_duration, 60.0, "First retry delay after a failed pull; doubles per failure."
    )
    pull_backoff_max: float = _key(parse_duration, 6 * 3600.0, "Longest retry delay.")
    pod_namespace: str = _key(
        _text,
        DEFAULT_POD_NAMESPACE,
        "Where puller and keeper pods run: a namespace holding nothing but their pull secrets.",
    )
    image_pull_secrets: tuple[str, ...] = _key(
        _parse_str_list,
        (),
        "Secrets in podNamespace that puller and keeper pods name as imagePullSecrets; their "
        "credentials also read registry catalogs and image sizes.",
    )
    keeper_enabled: bool = _key(
        _parse_bool, True, "Run one keeper pod per node that guards cached images from image GC."
    )
    schedulable_only: bool = _key(
        _parse_bool, True, "Skip cordoned (unschedulable) nodes when pulling."
    )
    startup_taint: str = _key(
        _text,
        "",
        "Taint key (e.g. image-sync.io/warming) removed once a new node has its top images.",
    )
    startup_taint_images: int = _key(
        _integer(0), 5, "How many of a node's highest-scored images must be present first."
    )
    tools_image: str = _key(
        _text,
        IMAGE,
        "Image holding the static sleeper /usr/local/bin/image-sync-sleeper.",
    )
    keeper_priority_class: str = _key(
        _text, KEEPER_PRIORITY_CLASS, "PriorityClass of puller and keeper pods (the lowest)."
    )
    default_image_size: int = _key(
        parse_size, 2_000_000_000, "Size assumed for an image whose size is not known yet."
    )
    learn_templates: bool = _key(
        _parse_bool,
        True,
        "Learn images from workload templates (Deployments, StatefulSets, DaemonSets, "
        "ReplicaSets, Jobs, CronJobs, templateKinds) before any of their pods exists.",
    )
    template_kinds: tuple[TemplateKind, ...] = _key(
        _parse_template_kinds,
        (),
        "Custom kinds with pod templates, learned like Deployments: a list of {apiVersion, "
        "kind, resource, templatePaths}; grant the prefetcher list and watch on each.",
    )
    rollout_grace: float = _key(
        parse_duration,
        3600.0,
        "An image a template stopped using is released this long after the change, once no "
        "template or running pod uses it.",
    )
    cron_lead_time: float = _key(
        parse_duration,
        600.0,
        "A CronJob's images turn urgent this long, plus size ÷ pullDeadlineMinBandwidth, "
        "before its next run.",
    )
    node_pool_labels: tuple[str, ...] = _key(
        _parse_str_list,
        (LABEL_ARCH, GPU_PRESENT_LABEL, LABEL_INSTANCE_TYPE),
        "Node labels whose values name a node's pool: pools where an image's pods run get it "
        "first, and an Observed image is wanted on the pools whose nodes hold it.",
    )
    placement: str = _key(
        _choice("all", "demand"),
        "all",
        "all: every eligible node gets each image (demand first); demand: only the nodes "
        "where it is predicted to run (a CachedImage's spec.placement overrides).",
    )

    # --- prefetcher runtime -------------------------------------------------------------
    leader_election: bool = _key(
        _parse_bool,
        True,
        "Elect one active replica through a Lease; off only for a single replica you trust.",
    )
    lease_name: str = _key(_text, "image-sync-prefetcher", "Name of the leader-election Lease.")
    lease_duration: float = _key(
        parse_duration, 15.0, "How long a standby waits on an unrenewed Lease before taking over."
    )
    lease_renew_deadline: float = _key(
        parse_duration,
        10.0,
        "The leader stops acting when it could not renew for this long (< leaseDuration).",
    )
    lease_retry_period: float = _key(
        parse_duration, 2.0, "How often the leader renews and a standby retries."
    )
    pass_coalesce: float = _key(
        parse_duration,
        1.0,
        "Least time between two planning passes: a change after a quiet spell is planned at "
        "once, a burst of changes waits for the next slot and makes one pass.",
    )
    watch_timeout: float = _key(
        parse_duration, 300.0, "Server-side timeout of one watch request; it then resumes."
    )
    learn_running_pods: bool = _key(
        _parse_bool,
        True,
        "On start, create Learned CachedImages for managed images of pods already running.",
    )
    max_learned_images: int = _key(
        _integer(1),
        2000,
        "Learned images prefetched at most, cluster-wide (best score first); Declared images do not count.",
    )
    max_learned_images_per_namespace: int = _key(
        _integer(1),
        300,
        "Learned images one namespace's pods can have prefetched (best score first).",
    )
    write_workers: int = _key(
        _integer(1), 8, "API writes of one kind a pass sends in parallel (pods, statuses)."
    )

    # --- sources of wanted images ---------------------------------------------------------
    sources: tuple[SourceRule, ...] = _key(
        _source_rules,
        (),
        "Per registry prefix: which sources (declared, learned, observed, catalog) count, "
        "and how its catalog is read (tags, maxAge, endpoint, caFile, repositories).",
    )
    default_sources: tuple[str, ...] = _key(
        parse_source_names,
        DEFAULT_SOURCES,
        "Sources that count for managed images no `sources` rule names.",
    )
    source_order: tuple[str, ...] = _key(
        _source_order,
        DEFAULT_SOURCE_ORDER,
        "Rank of the sources, best first: images of an earlier source are pulled first and "
        "kept first within a disk budget.",
    )
    catalog_tags: int = _key(
        _integer(1),
        DEFAULT_CATALOG_TAGS,
        "Newest tags of each repository a catalog source wants (a rule's `tags` overrides).",
    )
    catalog_max_age: float = _key(
        parse_duration,
        90 * 86400.0,
        "Tags pushed longer ago than this are left out of a catalog (0: no limit).",
    )
    catalog_interval: float = _key(
        parse_duration, 900.0, "How often registry catalogs are listed again."
    )
    registry_timeout: float = _key(
        parse_duration, 10.0, "Timeout of one request to a registry's API."
    )
    registry_size_lookup: bool = _key(
        _parse_bool,
        True,
        "Read the compressed size and platforms of wanted images under a `sources` prefix from "
        "the registry (manifest requests) before their first pull, so puller deadlines fit.",
    )

    def __post_init__(self) -> None:
        for rule in self.sources:
            if not under_registries(rule, self.registries):
                raise ConfigError(
                    f"sources: prefix {rule.prefix} is not under any of registries "
                    f"({', '.join(str(p) for p in self.registries)}): its images would not be managed"
                )


def yaml_key(field_name: str) -> str:
    """`sweep_interval` → `sweepInterval`."""
    head, *rest = field_name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def env_name(field_name: str) -> str:
    """`sweep_interval` → `IMAGE_SYNC_SWEEP_INTERVAL`."""
    return ENV_PREFIX + field_name.upper()


def load_config(path: str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Build the Config from `path` (else `$IMAGE_SYNC_CONFIG`), then `IMAGE_SYNC_*` overrides.

    `POD_NAMESPACE` sets `namespace` unless `IMAGE_SYNC_NAMESPACE` does.
    """
    env = os.environ if environ is None else environ
    path = path or env.get(CONFIG_ENV) or None
    raw: dict[str, Any] = {}
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                loaded = yaml.safe_load(handle)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(
                f"config file {path} must hold a mapping of keys, not {type(loaded).__name__}"
            )
        raw.update(loaded)

    fields = {yaml_key(f.name): f for f in dataclasses.fields(Config)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {', '.join(unknown)} in {path}; known keys: {', '.join(fields)}"
        )
    sources = {key: f"{path}: {key}" for key in raw}
    if "POD_NAMESPACE" in env and env_name("namespace") not in env:
        raw["namespace"] = env["POD_NAMESPACE"]
        sources["namespace"] = "POD_NAMESPACE"
    for key, spec in fields.items():
        variable = env_name(spec.name)
        if variable in env:
            raw[key] = env[variable]
            sources[key] = variable

    values: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            values[fields[key].name] = fields[key].metadata["parse"](value)
        except ValueError as exc:
            raise ConfigError(f"{sources[key]}: {exc}") from None
    config = Config(**values)
    _check_lease_timings(config)
    return config


def _check_lease_timings(config: Config) -> None:
    """client-go's rule: leaseDuration > renewDeadline > retryPeriod. Otherwise a standby
    could take over while the leader still believes it leads, or the leader would step down
    between two renewals."""
    duration, deadline, retry = (
        config.lease_duration,
        config.lease_renew_deadline,
        config.lease_retry_period,
    )
    if not duration > deadline > retry > 0:
        raise ConfigError(
            f"lease timings must satisfy leaseDuration ({duration:g}s) > leaseRenewDeadline "
            f"({deadline:g}s) > leaseRetryPeriod ({retry:g}s) > 0"
        )

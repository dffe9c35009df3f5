"""The one configuration object: a YAML file (`IMAGE_SYNC_CONFIG`) overridden by `IMAGE_SYNC_*`.

Every key is validated once, at start-up, with an error that names the key, so a typo in a
ConfigMap fails the rollout loudly instead of silently running with a default.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from imagesync.config_values import (
    integer,
    node_selector,
    number,
    one_of,
    parse_bool,
    parse_prefixes,
    parse_str_list,
    parse_template_kinds,
    plain_text,
    positive_size,
    quiet_hours,
    registry_bandwidths,
    source_order,
    source_rules,
)
from imagesync.matching import RegistryPrefix
from imagesync.names import (
    GPU_PRESENT_LABEL,
    IMAGE,
    KEEPER_PRIORITY_CLASS,
    LABEL_ARCH,
    LABEL_INSTANCE_TYPE,
    POD_NAMESPACE_DEFAULT,
)
from imagesync.quantities import parse_duration, parse_size
from imagesync.sources import (
    DEFAULT_CATALOG_TAGS,
    DEFAULT_SOURCE_ORDER,
    DEFAULT_SOURCES,
    SourceRule,
    parse_source_names,
    under_registries,
)
from imagesync.templates import TemplateKind

CONFIG_ENV = "IMAGE_SYNC_CONFIG"
ENV_PREFIX = "IMAGE_SYNC_"
DEFAULT_NAMESPACE = "image-sync"
EXPLICIT_ALWAYS_REWRITE = "rewrite"
EXPLICIT_ALWAYS_KEEP = "keep"
DEFAULT_POD_NAMESPACE = POD_NAMESPACE_DEFAULT


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names the key."""


def _key(parser: Callable[[Any], Any], default: Any, doc: str) -> Any:
    """A config field; its YAML key is the camelCase of its name, its variable IMAGE_SYNC_<NAME>."""
    return field(default=default, metadata={"parse": parser, "doc": doc})


@dataclass(frozen=True)
class Config:
    """Read once per process by `load_config`; pass it down, never re-read it."""

    # --- shared -------------------------------------------------------------------------
    registries: tuple[RegistryPrefix, ...] = _key(
        parse_prefixes,
        (RegistryPrefix("nvcr.io", ("nvidia",)),),
        "Registry prefixes whose images image-sync manages (whole path segments).",
    )
    mode: str = _key(
        one_of("opt-out", "opt-in"),
        "opt-out",
        "opt-out: every pod unless it opts out; opt-in: only pods annotated image-sync.io/enabled=true.",
    )
    namespace: str = _key(
        plain_text,
        DEFAULT_NAMESPACE,
        "Where image-sync's components and the prefetcher's Lease live.",
    )
    log_level: str = _key(one_of("debug", "info", "warning", "error"), "info", "Log verbosity.")
    log_format: str = _key(
        one_of("text", "json"),
        "text",
        "Log lines: text for people, or json (one object per line: time, level, logger, message, fields).",
    )

    # --- webhook ------------------------------------------------------------------------
    rewrite_latest: bool = _key(
        parse_bool,
        False,
        "Also rewrite an unset pull policy on :latest or untagged images (Kubernetes treats it as Always).",
    )
    explicit_always: str = _key(
        one_of(EXPLICIT_ALWAYS_REWRITE, EXPLICIT_ALWAYS_KEEP),
        EXPLICIT_ALWAYS_REWRITE,
        "An Always written on a tagged, non-latest image without a digest: rewrite it to IfNotPresent (tags under your registries are immutable), or keep it (tags get rebuilt).",
    )
    learn_flush_interval: float = _key(
        parse_duration,
        2.0,
        "How often a webhook worker writes the images it saw to CachedImage objects.",
    )
    learn_max_pending: int = _key(
        integer(1),
        5000,
        "Distinct images a webhook worker holds before a flush; beyond it new images are dropped and counted.",
    )

    learn_max_pending_bytes: int = _key(
        positive_size,
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
        number(0.0, 1.0),
        0.5,
        "Share of a node's image filesystem that prefetched images may fill.",
    )
    image_gc_high_threshold: float = _key(
        number(1.0, 100.0),
        85.0,
        "The kubelet's imageGCHighThresholdPercent; the budget never reaches past it.",
    )
    image_gc_low_threshold: float = _key(
        number(1.0, 100.0),
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
    max_concurrent_pulls: int = _key(integer(1), 50, "Puller pods running at once, cluster-wide.")
    max_pulls_per_registry: int = _key(
        integer(1), 20, "Puller pods running at once against one registry host."
    )
    registry_bandwidth: tuple[tuple[str, float], ...] = _key(
        registry_bandwidths,
        (),
        'Known bandwidth per registry host, e.g. {"harbor.example.com": "10Gbit/s"}: while '
        "workload pods pull from it, prefetches are throttled to prefetchBandwidthShare of it "
        "instead of paused.",
    )
    prefetch_bandwidth_share: float = _key(
        number(0.01, 1.0),
        0.5,
        "Share of a registry's known bandwidth (registryBandwidth) prefetches may hold while "
        "workload pods pull from it; the rest is left to them.",
    )
    max_pulls_per_image: int = _key(integer(1), 10, "Puller pods running at once for one image.")
    max_pulls_per_node: int = _key(
        integer(1),
        1,
        "Puller pods at once on one node (the kubelet pulls one image at a time by default).",
    )
    parallel_pull_nodes: tuple[tuple[str, str], ...] | None = _key(
        node_selector,
        None,
        "Nodes (a label map; {} for all) whose kubelets pull images in parallel "
        "(serializeImagePulls: false, maxParallelImagePulls at least maxPullsPerNode + 2): there "
        "a node's next puller starts beside the one in flight, so a puller's start and end "
        "overlap the other's pulls, and a workload pull still finds a free slot. Unset: none.",
    )
    pull_batch_size: int = _key(
        integer(1),
        10,
        "Images one puller pod pulls, one after another (fewer pods and API writes per image).",
    )
    join_pull_batch_size: int = _key(
        integer(1),
        500,
        "Images one puller pod pulls on a node that joined or turned Ready within urgentWindow "
        "while no workload pod starts there: its pulls follow one another with no puller's "
        "start and end between them (up to 500, everything a node usually needs: one puller, "
        "as one keeper holds them).",
    )
    quiet_hours: str = _key(
        quiet_hours,
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
        positive_size,
        10_000_000,
        "Slowest expected pull rate in bytes per second; the deadline adds size ÷ this.",
    )
    pull_backoff_base: float = _key(
        parse_duration, 60.0, "First retry delay after a failed pull; doubles per failure."
    )
    pull_backoff_max: float = _key(parse_duration, 6 * 3600.0, "Longest retry delay.")
    pod_namespace: str = _key(
        plain_text,
        DEFAULT_POD_NAMESPACE,
        "Where puller and keeper pods run: a namespace holding nothing but their pull secrets.",
    )
    image_pull_secrets: tuple[str, ...] = _key(
        parse_str_list,
        (),
        "Secrets in podNamespace that puller and keeper pods name as imagePullSecrets; their "
        "credentials also read registry catalogs and image sizes.",
    )
    keeper_enabled: bool = _key(
        parse_bool, True, "Run one keeper pod per node that guards cached images from image GC."
    )
    schedulable_only: bool = _key(
        parse_bool, True, "Skip cordoned (unschedulable) nodes when pulling."
    )
    startup_taint: str = _key(
        plain_text,
        "",
        "Taint key (e.g. image-sync.io/warming) removed once a new node has its top images.",
    )
    startup_taint_images: int = _key(
        integer(0), 5, "How many of a node's highest-scored images must be present first."
    )
    tools_image: str = _key(
        plain_text,
        IMAGE,
        "Image holding the static sleeper /usr/local/bin/image-sync-sleeper.",
    )
    keeper_priority_class: str = _key(
        plain_text, KEEPER_PRIORITY_CLASS, "PriorityClass of puller and keeper pods (the lowest)."
    )
    default_image_size: int = _key(
        parse_size, 2_000_000_000, "Size assumed for an image whose size is not known yet."
    )
    learn_templates: bool = _key(
        parse_bool,
        True,
        "Learn images from workload templates (Deployments, StatefulSets, DaemonSets, "
        "ReplicaSets, Jobs, CronJobs, templateKinds) before any of their pods exists.",
    )
    template_kinds: tuple[TemplateKind, ...] = _key(
        parse_template_kinds,
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
        parse_str_list,
        (LABEL_ARCH, GPU_PRESENT_LABEL, LABEL_INSTANCE_TYPE),
        "Node labels whose values name a node's pool: pools where an image's pods run get it "
        "first, and an Observed image is wanted on the pools whose nodes hold it.",
    )
    placement: str = _key(
        one_of("all", "demand"),
        "all",
        "all: every eligible node gets each image (demand first); demand: only the nodes "
        "where it is predicted to run (a CachedImage's spec.placement overrides).",
    )

    # --- prefetcher runtime -------------------------------------------------------------
    leader_election: bool = _key(
        parse_bool,
        True,
        "Elect one active replica through a Lease; off only for a single replica you trust.",
    )
    lease_name: str = _key(
        plain_text, "image-sync-prefetcher", "Name of the leader-election Lease."
    )
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
        parse_bool,
        True,
        "On start, create Learned CachedImages for managed images of pods already running.",
    )
    max_learned_images: int = _key(
        integer(1),
        2000,
        "Learned images prefetched at most, cluster-wide (best score first); Declared images do not count.",
    )
    max_learned_images_per_namespace: int = _key(
        integer(1),
        300,
        "Learned images one namespace's pods can have prefetched (best score first).",
    )
    write_workers: int = _key(
        integer(1), 8, "API writes of one kind a pass sends in parallel (pods, statuses)."
    )

    # --- sources of wanted images ---------------------------------------------------------
    sources: tuple[SourceRule, ...] = _key(
        source_rules,
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
        source_order,
        DEFAULT_SOURCE_ORDER,
        "Rank of the sources, best first: images of an earlier source are pulled first and "
        "kept first within a disk budget.",
    )
    catalog_tags: int = _key(
        integer(1),
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
        parse_bool,
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

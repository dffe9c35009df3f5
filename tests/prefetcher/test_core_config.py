"""The prefetcher's configuration keys: defaults, units and validation."""

from __future__ import annotations

import pytest

from imagesync.config import ConfigError, load_config


def test_defaults() -> None:
    config = load_config(None, environ={})
    assert config.image_retention == 14 * 86400
    assert config.score_half_life == 3 * 86400
    assert config.disk_budget == 0.5 and config.image_gc_high_threshold == 85
    assert config.max_pulls_per_node == 1 and config.parallel_pull_nodes is None
    assert config.quiet_hours == "" and config.startup_taint == ""
    assert config.keeper_enabled and config.schedulable_only
    assert config.tools_image == "ghcr.io/image-sync/image-sync:0.1.0"
    assert config.keeper_priority_class == "image-sync-keeper"


def test_units_and_lists_from_the_environment() -> None:
    config = load_config(
        None,
        environ={
            "IMAGE_SYNC_PULL_DEADLINE_MIN_BANDWIDTH": "50MB",
            "IMAGE_SYNC_PULL_BACKOFF_MAX": "2h",
            "IMAGE_SYNC_IMAGE_PULL_SECRETS": "harbor, ngc",
            "IMAGE_SYNC_QUIET_HOURS": "22:00-06:00",
            "IMAGE_SYNC_DEFAULT_IMAGE_SIZE": "5GB",
            "IMAGE_SYNC_PARALLEL_PULL_NODES": "{pool: fast, zone: a}",
        },
    )
    assert config.parallel_pull_nodes == (("pool", "fast"), ("zone", "a"))
    assert (
        load_config(None, environ={"IMAGE_SYNC_PARALLEL_PULL_NODES": "{}"}).parallel_pull_nodes
        == ()
    )
    assert config.pull_deadline_min_bandwidth == 50_000_000
    assert config.pull_backoff_max == 7200
    assert config.image_pull_secrets == ("harbor", "ngc")
    assert config.quiet_hours == "22:00-06:00"
    assert config.default_image_size == 5_000_000_000


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("IMAGE_SYNC_QUIET_HOURS", "8-18", "QUIET_HOURS: expected"),
        ("IMAGE_SYNC_DISK_BUDGET", "1.5", "DISK_BUDGET: expected a number between 0 and 1"),
        ("IMAGE_SYNC_MAX_PULLS_PER_NODE", "0", "MAX_PULLS_PER_NODE: expected a whole number >= 1"),
        ("IMAGE_SYNC_PULL_DEADLINE_MIN_BANDWIDTH", "0", "expected a size above zero"),
        ("IMAGE_SYNC_PARALLEL_PULL_NODES", "[a]", "PARALLEL_PULL_NODES: expected a map of node"),
    ],
)
def test_bad_values_name_the_key(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, environ={variable: value})

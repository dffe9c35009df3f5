"""Noticing an undone rewrite: which stored pods prove it, and that it is said once."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from imagesync.names import ANNOTATION_REWRITTEN
from prefetcher.metrics import Metrics
from prefetcher.pullpolicy import RewriteWatch, undone_rewrite


def stored(marked: str | None, **policies: str) -> dict[str, Any]:
    annotations = {ANNOTATION_REWRITTEN: marked} if marked is not None else {}
    return {
        "metadata": {"name": "web-1", "namespace": "shop", "annotations": annotations},
        "spec": {
            "initContainers": [{"name": "init", "imagePullPolicy": policies.pop("init", "")}],
            "containers": [{"name": n, "imagePullPolicy": p} for n, p in policies.items()],
        },
    }


def test_only_a_rewritten_container_with_another_policy_counts() -> None:
    assert undone_rewrite(stored(None, main="Always")) is None  # never rewritten
    assert undone_rewrite(stored("main", main="IfNotPresent", side="Always")) is None
    found = undone_rewrite(stored("init,main", init="Always", main="IfNotPresent"))
    assert found is not None
    assert (found.pod, dict(found.policies)) == ("shop/web-1", {"init": "Always"})
    assert undone_rewrite({"metadata": None, "spec": "?"}) is None


def test_said_once_in_the_log_the_metric_and_the_report(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    watch = RewriteWatch(metrics, now=lambda: 1_700_000_000.0)

    def gauge() -> float | None:
        return metrics.registry.get_sample_value("image_sync_prefetcher_pull_policy_rewrite_undone")

    assert gauge() == 0 and watch.as_dict() is None
    watch.see(stored("main", main="IfNotPresent"))
    assert gauge() == 0
    with caplog.at_level(logging.WARNING, logger="prefetcher.pullpolicy"):
        for _ in range(3):
            watch.see(stored("main", main="Always"))
    assert gauge() == 1
    assert len(caplog.records) == 1 and "shop/web-1 (main=Always)" in caplog.messages[0]
    report = watch.as_dict()
    assert report is not None
    assert report["pod"] == "shop/web-1" and report["policies"] == {"main": "Always"}
    assert report["since"].startswith("2023-11-14T22:13:20")

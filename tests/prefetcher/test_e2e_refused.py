"""End to end on the simulator: a puller the API server refuses is a failed pull, not a pull."""

from __future__ import annotations

from typing import Any

import requests
import yaml
from kubernetes import client

from simulator.cluster import SimCluster
from tests.prefetcher.conftest import (
    POD_NAMESPACE,
    PRIORITY_CLASS,
    SMALL,
    SPEED,
    Running,
    declare,
    ensure_namespace,
    install_crd,
    report,
    sim_config,
    untyped,
)
from tests.waiting import wait_for


def test_refused_pullers_show_as_failures_until_the_missing_piece_is_installed() -> None:
    # An install that skipped the PriorityClass: every puller creation gets a 403.
    with SimCluster("gpu-cluster", speed=SPEED) as sim:
        api = sim.api_client()
        install_crd(api)
        ensure_namespace(api)
        ensure_namespace(api, POD_NAMESPACE)
        declare(api, SMALL)
        running = Running(sim)
        try:
            prefetcher = running.start(sim_config(pull_backoff_base=60.0))
            nodes = sim.node_names()

            def all_failed() -> dict[str, Any] | None:
                r = report(prefetcher)
                cells = [n["images"].get(SMALL, {}) for n in r["nodes"]]
                done = all(c.get("state") == "failed" for c in cells)
                return r if done and len(cells) == len(nodes) else None

            final = wait_for(all_failed, timeout=120, interval=0.5, what="every cell failed")
            assert final["summary"]["coverage"] == 0.0
            assert final["summary"]["failedPairs"] == len(nodes)
            cell = final["nodes"][0]["images"][SMALL]
            assert cell["reason"] == "PullerRefused"
            assert cell["kind"] == "refused"
            assert "HTTP 403" in cell["message"]
            assert "no PriorityClass with name image-sync-keeper was found" in cell["message"]
            assert "hint: the PriorityClass of image-sync's pods is missing" in cell["message"]
            assert cell["attempts"] >= 1 and cell["retryAt"]

            metrics = requests.get(
                f"http://127.0.0.1:{prefetcher.server.port}/metrics", timeout=30
            ).text
            refused = [
                line
                for line in metrics.splitlines()
                if line.startswith("image_sync_prefetcher_pulls_failed_total")
                and 'reason="PullerRefused"' in line
            ]
            assert refused and float(refused[0].split()[-1]) >= len(nodes)

            def refusal_events() -> list[Any]:
                events = untyped(client.CoreV1Api(api)).list_namespaced_event(POD_NAMESPACE).items
                return [
                    e
                    for e in events
                    if e.reason == "PrefetchFailed" and "PullerRefused" in (e.message or "")
                ]

            events = wait_for(refusal_events, timeout=60, what="PrefetchFailed events")
            assert {e.involved_object.kind for e in events} == {"Pod"}

            # The admin installs the missing piece: the next tries succeed.
            untyped(client.SchedulingV1Api(api)).create_priority_class(
                yaml.safe_load(PRIORITY_CLASS.read_text())
            )
            wait_for(
                lambda: report(prefetcher)["summary"]["coverage"] == 1.0,
                timeout=180,
                interval=0.5,
                what="coverage 1.0 once the PriorityClass exists",
            )
        finally:
            running.stop_all()
            api.close()

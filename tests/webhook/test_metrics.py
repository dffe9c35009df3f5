"""/metrics counts every worker's requests, not the share of the worker that answers the scrape."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from tests import promtool
from tests.webhook.conftest import Tls, WebhookProcess, start_webhook
from tests.webhook.pods import HARBOR, deployment_pod, review

BATCH = 40


def samples(webhook: WebhookProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = webhook.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def workers_with_requests(directory: Path) -> int:
    """How many worker processes have counted at least one request (one file per process)."""
    busy = 0
    for path in directory.glob("counter_*.db"):
        values = MmapedDict.read_all_values_from_file(str(path))
        if any("image_sync_webhook_requests" in entry[0] and entry[1] > 0 for entry in values):
            busy += 1
    return busy


def post_on_new_connection(webhook: WebhookProcess, index: int) -> int:
    """Each request on its own connection, so the workers' accept loops share them."""
    image = f"{HARBOR}/team/app-{index % 7}:1" if index % 2 else "docker.io/library/busybox:1.36"
    with requests.Session() as session:
        answer = session.post(
            f"{webhook.url}/mutate",
            json=review(deployment_pod(image, "Always")),
            verify=webhook.tls.ca_file,
            timeout=10,
        )
    return answer.status_code


def test_metrics_aggregate_all_workers(tmp_path: Path, tls: Tls) -> None:
    directory = tmp_path / "multiproc"
    server = start_webhook(
        tmp_path, tls, workers=3, env={"PROMETHEUS_MULTIPROC_DIR": str(directory)}
    )
    try:
        sent = patched = 0
        with ThreadPoolExecutor(max_workers=8) as pool:
            # Keep sending until at least two workers have answered (with three workers and
            # eight concurrent new connections that is the first batch, in practice).
            for _ in range(50):
                statuses = list(
                    pool.map(lambda i: post_on_new_connection(server, i), range(sent, sent + BATCH))
                )
                assert statuses == [200] * BATCH
                patched += sum(1 for i in range(sent, sent + BATCH) if i % 2)
                sent += BATCH
                if workers_with_requests(directory) >= 2:
                    break
        assert workers_with_requests(directory) >= 2
        bad = server.post(None, raw=b"nope")
        assert bad.status_code == 400

        values = samples(server)
        requests_total = {
            dict(labels)["outcome"]: value
            for (name, labels), value in values.items()
            if name == "image_sync_webhook_requests_total"
        }
        assert requests_total == {
            "patched": patched,
            "unchanged": sent - patched,
            "skipped": 0,
            "invalid": 1,
            "error": 0,
        }
        assert values[("image_sync_webhook_patches_total", ())] == patched
        assert values[("image_sync_webhook_containers_rewritten_total", ())] == patched
        assert values[("image_sync_webhook_request_duration_seconds_count", ())] == sent + 1
        assert (
            values[("image_sync_webhook_request_duration_seconds_bucket", (("le", "+Inf"),))]
            == sent + 1
        )
        for name in (
            "image_sync_webhook_images_seen_total",
            "image_sync_webhook_learn_dropped_total",
        ):
            assert (name, ()) in values
    finally:
        assert server.stop() == 0
    assert os.path.isdir(directory)  # a directory given by the environment is left in place


def test_metrics_pass_promtool_check(webhook: WebhookProcess) -> None:
    """What Prometheus scrapes from gunicorn's workers parses and follows its conventions."""
    # Before any review: every outcome is there at 0 (ImageSyncWebhookDown alerts on absence).
    fresh = samples(webhook)
    assert {
        dict(labels)["outcome"]
        for (name, labels), value in fresh.items()
        if name == "image_sync_webhook_requests_total" and value == 0
    } == {"patched", "unchanged", "skipped", "invalid", "error"}
    for index in range(6):
        assert post_on_new_connection(webhook, index) == 200
    assert webhook.post(None, raw=b"nope").status_code == 400
    answer = webhook.get("/metrics")
    assert answer.status_code == 200
    assert "image_sync_webhook_request_duration_seconds_bucket" in answer.text
    promtool.check_metrics(answer.text)


def test_the_webhook_command_imports_prometheus_client_only_once_its_directory_is_set() -> None:
    """prometheus_client picks in-memory or per-worker-file values when first imported: the
    command line of `image-sync webhook` must not import it (through another subcommand's
    module) before the server points it at the multiprocess directory, or every worker's
    counts stay in memory and /metrics is empty."""
    probe = (
        "import sys\n"
        "from imagesync.cli import build_parser, chosen_command\n"
        "build_parser(chosen_command(['webhook', '--cert', 'c', '--key', 'k']))\n"
        "print('prometheus_client' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"

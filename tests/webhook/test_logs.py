"""The webhook's log lines under gunicorn: text by default, one JSON object per line on request.

gunicorn's own messages (booting, workers) go through the same handler as the webhook's,
so a log pipeline never meets a line in another format.
"""

from __future__ import annotations

import re
from pathlib import Path

from simulator.testing import running_apiserver
from tests.jsonlogs import records
from tests.webhook.conftest import Tls, WebhookProcess, start_webhook
from tests.webhook.pods import gpu_job_pod, review

PYTORCH = "nvcr.io/nvidia/pytorch:24.08-py3"
TEXT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: "
)


def log_lines(server: WebhookProcess) -> list[str]:
    return [line for line in server.log().splitlines() if line.strip()]


def test_text_is_the_default_for_every_line(webhook: WebhookProcess) -> None:
    assert webhook.post(review(gpu_job_pod())).status_code == 200
    lines = log_lines(webhook)
    assert any("gunicorn.error: Booting worker" in line for line in lines)
    assert any("webhook.server: worker" in line for line in lines)
    assert [line for line in lines if not TEXT_LINE.match(line)] == []


def test_json_lines_carry_the_image_and_reason_of_a_failed_learning_write(
    tmp_path: Path, tls: Tls
) -> None:
    # An API server without the CachedImage CRD (not installed yet): every write gets a 404.
    with running_apiserver() as apiserver:
        kubeconfig = apiserver.write_kubeconfig(tmp_path / "kubeconfig")
        server = start_webhook(
            tmp_path,
            tls,
            workers=2,
            kubeconfig=str(kubeconfig),
            env={"IMAGE_SYNC_LOG_FORMAT": "json", "IMAGE_SYNC_LEARN_FLUSH_INTERVAL": "1h"},
        )
        try:
            assert server.post(review(gpu_job_pod())).status_code == 200
        finally:
            assert server.stop() == 0  # the final flush meets the 404
    lines = records(server.log())
    loggers = {r["logger"] for r in lines}
    assert {"gunicorn.error", "webhook.server", "webhook"} <= loggers
    [failed] = [r for r in lines if r.get("image") == PYTORCH]
    assert failed["level"] == "WARNING"
    assert failed["reason"] == "http_404"
    assert PYTORCH in failed["message"] and "404" in failed["message"]

"""`POST /validate-pods` on the real gunicorn over TLS: the pod namespace's guard for clusters
without ValidatingAdmissionPolicy."""

from __future__ import annotations

import uuid

from tests.podguard_cases import BREACHES, breached, message, own_pods
from tests.webhook.conftest import WebhookProcess
from tests.webhook.pods import review


def validate(webhook: WebhookProcess, body: object | bytes) -> tuple[int, dict[str, object]]:
    data = body if isinstance(body, bytes) else None
    response = webhook.session.post(
        f"{webhook.url}/validate-pods",
        data=data,
        json=None if data is not None else body,
        verify=webhook.tls.ca_file,
        timeout=10,
    )
    return response.status_code, response.json()


def test_the_prefetchers_pods_are_allowed(webhook: WebhookProcess) -> None:
    for pod in own_pods():
        uid = str(uuid.uuid4())
        status, answer = validate(webhook, review(pod, uid=uid))
        assert status == 200
        assert answer["response"] == {"uid": uid, "allowed": True}


def test_every_breach_is_refused_with_the_rule_it_breaks(webhook: WebhookProcess) -> None:
    [puller, _] = own_pods()
    for what, rule, make in BREACHES:
        status, answer = validate(webhook, review(breached(puller, make)))
        response = answer["response"]
        assert status == 200 and isinstance(response, dict), what
        assert response["allowed"] is False, what
        assert response["status"]["code"] == 403, what
        assert response["status"]["message"] == f"image-sync pod guard: {message(rule)}", what


def test_what_is_not_a_pod_creation_passes_and_garbage_is_a_400(webhook: WebhookProcess) -> None:
    [puller, _] = own_pods()
    shell = breached(puller, lambda p: p["spec"].update(serviceAccountName="default"))
    status, answer = validate(webhook, review(shell, operation="DELETE"))
    assert status == 200 and answer["response"]["allowed"] is True  # type: ignore[index]
    status, answer = validate(webhook, b"{not json")
    assert status == 400 and "error" in answer
    metrics = webhook.get("/metrics").text
    for verdict in ("allowed", "refused", "invalid"):
        assert f'image_sync_webhook_pod_guard_reviews_total{{verdict="{verdict}"}}' in metrics

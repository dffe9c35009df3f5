"""A refused puller creation as failure records, outcomes and hints (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from prefetcher import presence, refusals
from prefetcher.model import PullAction, PullRecord

NOW = datetime(2026, 1, 1, tzinfo=UTC)
MISSING_CLASS = (
    'create pod image-sync/pull-x: HTTP 403 Forbidden: pods "pull-x" is forbidden: '
    "no PriorityClass with name image-sync-keeper was found"
)


def pull(*images: str, attempt: int = 1) -> PullAction:
    return PullAction(
        node="n1",
        images=images,
        pod_name="pull-x",
        urgent=False,
        why="routine",
        score=1.0,
        size=100,
        deadline_seconds=600,
        attempt=attempt,
        pod={},
    )


def test_every_image_of_a_refused_puller_fails_with_the_servers_answer_and_a_hint() -> None:
    records, outcomes = refusals.refused_pull(pull("a", "b"), 403, MISSING_CLASS, {}, NOW)
    assert [(r.node, r.image, r.attempts) for r in records] == [("n1", "a", 1), ("n1", "b", 1)]
    assert all(r.reason == refusals.REFUSED_REASON and r.last_failure == NOW for r in records)
    assert records[0].message.startswith("HTTP 403: ")
    assert "no PriorityClass with name image-sync-keeper" in records[0].message
    assert "(hint: the PriorityClass of image-sync's pods is missing" in records[0].message
    assert [o.succeeded for o in outcomes] == [False, False]
    assert {o.kind for o in outcomes} == {"refused"}
    assert presence.failure_kind(records[0].reason, records[0].message) == "refused"


def test_attempts_grow_from_the_previous_record() -> None:
    previous = PullRecord("n1", "a", 3, NOW, "PullerRefused", "", "refused:pull-x:earlier")
    records, _ = refusals.refused_pull(pull("a"), 403, MISSING_CLASS, {("n1", "a"): previous}, NOW)
    assert records[0].attempts == 4
    assert records[0].pod_uid != previous.pod_uid


def test_transient_answers_are_not_refusals() -> None:
    assert not any(refusals.is_refusal(s) for s in (0, 409, 429, 500, 503, 504))
    assert all(refusals.is_refusal(s) for s in (400, 403, 404, 422))


def test_hints_for_common_install_gaps() -> None:
    assert "ResourceQuota" in refusals.hint('pods "p" is forbidden: exceeded quota: pods')
    assert "Pod Security" in refusals.hint('violates PodSecurity "restricted:latest"')
    assert "RBAC" in refusals.hint('User "x" cannot create resource "pods"')
    assert "admission webhook" in refusals.hint('admission webhook "x.y" denied the request')
    assert "pod namespace is missing" in refusals.hint('namespaces "image-sync-cache" not found')
    guard = (
        'admission webhook "pods.guard.image-sync.io" denied the request: image-sync pod guard: x'
    )
    assert "different releases" in refusals.hint(guard)
    policy = "ValidatingAdmissionPolicy 'image-sync-pod-guard' with binding 'b' denied request"
    assert "different releases" in refusals.hint(policy)
    assert refusals.hint("something else") == ""

"""`POST /validate-pods`: the admission guard of the pod namespace, served by the webhook.

Clusters before Kubernetes 1.30 have no ValidatingAdmissionPolicy; there the
ValidatingWebhookConfiguration `image-sync-pod-guard` sends every pod created in the pod
namespace here, and a pod that is not shaped like a puller or keeper
(`imagesync.podguard.RULES`) is refused with the rules it breaks. Unlike `/mutate`, this
endpoint fails closed: the configuration's `failurePolicy` is `Fail`, a body that is not an
AdmissionReview gets a 400, and an internal error refuses the pod.
"""

from __future__ import annotations

import logging

import orjson
from flask import Response, request

from imagesync.podguard import refusals
from webhook.metrics import Metrics
from webhook.review import (
    AdmissionReviewResponse,
    ReviewError,
    build_refusal,
    build_response,
    parse_review,
)

log = logging.getLogger(__name__)

REFUSAL_PREFIX = "image-sync pod guard: "
VERDICT_ALLOWED = "allowed"
VERDICT_REFUSED = "refused"
VERDICT_INVALID = "invalid"


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


def verdict(body: bytes) -> tuple[AdmissionReviewResponse, str]:
    """The answer to one review and its verdict; ReviewError for a body that is no review."""
    admission = parse_review(body)
    if not admission.is_pod_create or admission.obj is None:
        return build_response(admission.uid), VERDICT_ALLOWED
    try:
        broken = refusals(admission.obj)
    except Exception:  # fail closed: a pod the guard cannot read is not let in
        log.warning("pod guard: cannot check a pod; refusing it", exc_info=True)
        broken = ["the pod could not be checked"]
    if not broken:
        return build_response(admission.uid), VERDICT_ALLOWED
    name = admission.name or "(generated name)"
    log.warning(
        "pod guard refused %s/%s: %s",
        admission.namespace,
        name,
        "; ".join(broken),
        extra={"namespace": admission.namespace, "pod": name},
    )
    return build_refusal(admission.uid, REFUSAL_PREFIX + "; ".join(broken)), VERDICT_REFUSED


def validate_pods(metrics: Metrics) -> Response:
    """The Flask view of `POST /validate-pods`."""
    try:
        answer, outcome = verdict(request.get_data(cache=False))
    except ReviewError as exc:
        metrics.pod_guard.labels(verdict=VERDICT_INVALID).inc()
        return _json({"error": exc.reason}, status=400)
    metrics.pod_guard.labels(verdict=outcome).inc()
    return _json(answer)

"""The webhook's HTTP surface: `create_app()` wires config, metrics and the learner into Flask.

Whatever happens inside, a well-formed AdmissionReview is answered `allowed: true`: the
webhook exists to speed pods up, so an internal error admits the pod unchanged (with a
warning) rather than failing its creation. Only a body that is not an AdmissionReview gets
a 400, with the reason, because then there is no `uid` to answer.

Readiness: `/readyz` answers 200 as soon as the app is built, i.e. the configuration was
loaded and validated. It does not wait for the API server: mutation needs nothing from it,
and a webhook held out of its Service would only mean pods admitted unmutated. The body
says whether learning is on and whether its last write reached the API server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import orjson
from flask import Flask, Response, abort, request

from imagesync.config import Config
from imagesync.mutation import ImageMatcher, PodDecision, decide, marked_patch
from webhook import metrics as metrics_module
from webhook import podguard
from webhook.learning import sighting_for
from webhook.recorder import Recorder
from webhook.review import (
    MAX_BODY_BYTES,
    AdmissionRequest,
    AdmissionReviewResponse,
    ReviewError,
    build_response,
    parse_review,
)

log = logging.getLogger(__name__)

EXTENSION = "image_sync"
INTERNAL_ERROR_WARNING = "image-sync webhook: internal error; the pod was admitted unchanged"


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


class Webhook:
    """The request handler's state: config, metrics, optional recorder. One per worker."""

    def __init__(
        self, config: Config, metrics: metrics_module.Metrics, recorder: Recorder | None
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.recorder = recorder
        self.matcher = ImageMatcher(config)

    def review(self, admission: AdmissionRequest) -> tuple[AdmissionReviewResponse, str]:
        """The AdmissionReview answer and the metrics outcome; never raises.

        The answer is decided first; learning runs after it under its own guard, so a pod
        that the learner cannot read (say, `ownerReferences` sent as an object) still gets
        its patch.
        """
        try:
            if not admission.is_pod_create or admission.obj is None:
                return build_response(admission.uid), metrics_module.OUTCOME_SKIPPED
            pod = admission.obj
            decision = decide(pod, self.config, self.matcher)
            if decision.patch:
                self.metrics.patches.inc()
                self.metrics.containers_rewritten.inc(len(decision.patch))
                answer = build_response(admission.uid, marked_patch(pod, decision))
                outcome = metrics_module.OUTCOME_PATCHED
            else:
                answer, outcome = build_response(admission.uid), metrics_module.OUTCOME_UNCHANGED
        except Exception:
            log.warning(
                "admitting %s/%s unchanged after an internal error",
                admission.namespace,
                admission.name or "(generated name)",
                exc_info=True,
                extra={"namespace": admission.namespace, "pod": admission.name},
            )
            return (
                build_response(admission.uid, warnings=[INTERNAL_ERROR_WARNING]),
                metrics_module.OUTCOME_ERROR,
            )
        self.learn(admission, pod, decision)
        return answer, outcome

    def learn(
        self, admission: AdmissionRequest, pod: Mapping[str, Any], decision: PodDecision
    ) -> None:
        """Hand the pod's managed images to the learner; an error here is counted, never raised."""
        if self.recorder is None:
            return
        try:
            sighting = sighting_for(admission, pod, decision)
            if sighting is not None:
                self.recorder.record(sighting)
        except Exception:
            self.metrics.learn_errors.inc()
            log.warning(
                "not learning from %s/%s after an internal error (the pod was answered)",
                admission.namespace,
                admission.name or "(generated name)",
                exc_info=True,
                extra={"namespace": admission.namespace, "pod": admission.name},
            )

    def mutate(self) -> Response:
        started = time.perf_counter()
        # A Content-Length over MAX_BODY_BYTES: 413 from Flask, unread. A chunked body is
        # read up to the limit only; one that reaches it is refused as too large.
        body = request.get_data(cache=False)
        if request.content_length is None and len(body) >= MAX_BODY_BYTES:
            abort(413)
        try:
            admission = parse_review(body)
        except ReviewError as exc:
            outcome = metrics_module.OUTCOME_INVALID
            response = _json({"error": exc.reason}, status=400)
        except Exception as exc:  # a parser bug must still answer, not kill the worker
            log.warning("cannot parse an AdmissionReview", exc_info=True)
            outcome = metrics_module.OUTCOME_INVALID
            response = _json({"error": f"cannot parse the request: {type(exc).__name__}"}, 400)
        else:
            answer, outcome = self.review(admission)
            response = _json(answer)
        self.metrics.by_outcome[outcome].inc()
        self.metrics.latency.observe(time.perf_counter() - started)
        return response

    def readiness(self) -> dict[str, Any]:
        recorder = self.recorder
        return {
            "ready": True,
            "learning": "off" if recorder is None else "on",
            "apiReached": bool(recorder and recorder.reached_api),
            "lastLearnError": recorder.last_error if recorder else "",
        }


def create_app(
    config: Config, recorder: Recorder | None = None, metrics: metrics_module.Metrics | None = None
) -> Flask:
    """The one wiring point of a webhook worker; `recorder` None means learning is off."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    webhook = Webhook(config, metrics or metrics_module.Metrics(), recorder)
    app.extensions[EXTENSION] = webhook

    @app.post("/mutate")
    def mutate() -> Response:
        return webhook.mutate()

    @app.post("/validate-pods")
    def validate_pods() -> Response:
        return podguard.validate_pods(webhook.metrics)

    @app.get("/healthz")
    def healthz() -> Response:
        return _json({"ok": True})

    @app.get("/readyz")
    def readyz() -> Response:
        return _json(webhook.readiness())

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        body, content_type = webhook.metrics.exposition()
        return Response(body, mimetype=None, content_type=content_type)

    @app.errorhandler(413)
    def too_large(_: Exception) -> Response:
        webhook.metrics.by_outcome[metrics_module.OUTCOME_INVALID].inc()
        return _json({"error": f"request body larger than {MAX_BODY_BYTES} bytes"}, 413)

    @app.errorhandler(500)
    def internal(_: Exception) -> Response:
        return _json({"error": "internal error"}, 500)

    return app


def webhook_of(app: Flask) -> Webhook:
    """The Webhook a `create_app` app serves (gunicorn's worker_exit hook flushes its recorder)."""
    webhook: Webhook = app.extensions[EXTENSION]
    return webhook

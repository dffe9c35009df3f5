"""The servers the webhook benchmark compares, each in a child process: allow-all floor, webhook."""

from __future__ import annotations

import argparse
import functools
import json
from collections.abc import Callable
from typing import Any

HARBOR = "harbor.example.internal"
REGISTRIES = f"{HARBOR},nvcr.io/nvidia"


def floor_app(config: Any, options: Any, codec: str = "json") -> Callable[..., Any]:
    """The least a webhook can do: parse the review, echo the uid, allow."""
    from flask import Flask, Response, request

    del config, options
    if codec == "orjson":
        import orjson

        loads: Callable[[bytes], Any] = orjson.loads
        dumps: Callable[[Any], bytes | str] = orjson.dumps
    else:
        loads, dumps = json.loads, json.dumps
    app = Flask("floor")

    @app.post("/mutate")
    def mutate() -> Response:
        review = loads(request.get_data(cache=False))
        body = {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": review["request"]["uid"], "allowed": True},
        }
        return Response(dumps(body), mimetype="application/json")

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("{}", mimetype="application/json")

    return app


class NullStore:
    """Accepts every write: the learner's flushes cost CPU as usual but reach no API server."""

    def get(self, name: str) -> dict[str, Any] | None:
        del name
        return None

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "metadata": {**body["metadata"], "resourceVersion": "1"}}

    def replace(self, body: dict[str, Any]) -> dict[str, Any]:
        return body

    def replace_status(self, body: dict[str, Any]) -> dict[str, Any]:
        return body


def webhook_app_with_learning(config: Any, options: Any) -> Callable[..., Any]:
    from webhook.app import create_app
    from webhook.metrics import Metrics
    from webhook.recorder import Recorder

    del options
    metrics = Metrics()
    recorder = Recorder(
        NullStore(),
        metrics,
        flush_interval=config.learn_flush_interval,
        max_pending=config.learn_max_pending,
    )
    return create_app(config, recorder, metrics)


def serve(args: argparse.Namespace) -> int:
    from imagesync.config import load_config
    from webhook.server import ServerOptions
    from webhook.server import serve as run_server

    config = load_config(
        environ={"IMAGE_SYNC_REGISTRIES": REGISTRIES, "IMAGE_SYNC_LOG_LEVEL": "warning"}
    )
    options = ServerOptions(
        certfile=args.cert,
        keyfile=args.key,
        bind=args.bind,
        workers=args.workers,
        threads=args.threads,
        learning=False,
    )
    loader = (
        functools.partial(floor_app, codec=args.floor_json)
        if args.serve == "floor"
        else webhook_app_with_learning
    )
    return run_server(options, config, loader)

"""Command line of `image-sync prefetcher`: arguments only; the work is imported when it runs."""

from __future__ import annotations

import argparse

from imagesync.config import Config

DEFAULT_BIND = "0.0.0.0:8080"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="kubeconfig to reach the API server (default: $KUBECONFIG, else in-cluster)",
    )
    parser.add_argument(
        "--bind",
        metavar="HOST:PORT",
        default=DEFAULT_BIND,
        help=f"where to serve /report, /, /metrics and /healthz (default: {DEFAULT_BIND})",
    )
    parser.add_argument(
        "--metrics-bind",
        metavar="HOST:PORT",
        help="serve /metrics on this listener instead (e.g. 0.0.0.0:9090 for Prometheus, with "
        "--bind 127.0.0.1:8080 keeping the report off the pod network)",
    )
    parser.add_argument(
        "--identity",
        metavar="NAME",
        help="leader-election identity (default: $POD_NAME, else hostname and process id)",
    )


def run(args: argparse.Namespace, config: Config) -> int:
    from prefetcher.__main__ import serve

    return serve(args, config)

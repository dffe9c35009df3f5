"""Command line of `image-sync webhook`: arguments only; the work is imported when it runs."""

from __future__ import annotations

import argparse
import logging

from imagesync.config import Config

log = logging.getLogger("webhook")

DEFAULT_BIND = "0.0.0.0:8443"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cert", required=True, metavar="FILE", help="serving certificate (PEM)")
    parser.add_argument("--key", required=True, metavar="FILE", help="its private key (PEM)")
    parser.add_argument(
        "--bind", default=DEFAULT_BIND, metavar="HOST:PORT", help=f"default {DEFAULT_BIND}"
    )
    parser.add_argument(
        "--workers",
        type=_positive,
        default=2,
        metavar="N",
        help="gunicorn worker processes (default 2)",
    )
    parser.add_argument(
        "--threads", type=_positive, default=4, metavar="N", help="threads per worker (default 4)"
    )
    parser.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="where learned images are written (default: $KUBECONFIG, else in-cluster); "
        "without an API server the webhook still mutates, with learning off",
    )


def _learning_available(kubeconfig: str | None) -> bool:
    """Check once, in the launcher, so the log says plainly whether images will be learned."""
    from imagesync.kubeclient import KubeError, load_api_client

    try:
        load_api_client(kubeconfig).close()
    except KubeError as exc:
        log.warning("LEARNING IS OFF (pods are still mutated): %s", exc)
        return False
    except Exception as exc:
        log.warning("LEARNING IS OFF (pods are still mutated): cannot load kubeconfig: %s", exc)
        return False
    log.info("learning is on: images seen are written to CachedImage objects")
    return True


def run(args: argparse.Namespace, config: Config) -> int:
    for path in (args.cert, args.key):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            log.error("cannot read %s: %s", path, exc.strerror)
            return 2
    from webhook.server import ServerOptions, serve

    options = ServerOptions(
        certfile=args.cert,
        keyfile=args.key,
        bind=args.bind,
        workers=args.workers,
        threads=args.threads,
        kubeconfig=args.kubeconfig,
        learning=_learning_available(args.kubeconfig),
    )
    log.info(
        "serving the webhook on https://%s with %d workers; registries: %s; mode: %s",
        options.bind,
        options.workers,
        ", ".join(str(p) for p in config.registries),
        config.mode,
    )
    return serve(options, config)

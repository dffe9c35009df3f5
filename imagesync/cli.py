"""The `image-sync` console script: one subcommand per component, each wired in its own module."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from imagesync.config import ConfigError, load_config

# subcommand -> (module providing add_arguments(parser) and run(args, config) -> int, help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "certs": ("certs.cli", "create or renew the webhook's CA and serving certificate"),
    "webhook": ("webhook.cli", "serve the mutating admission webhook over TLS (gunicorn)"),
    "prefetcher": ("prefetcher.cli", "run the prefetcher controller and its report"),
    "sim": ("simulator.cli", "run the simulated cluster (API server, kubelets, registries)"),
    "demo": ("simulator.demo_cli", "run the end-to-end demo on the simulated cluster"),
    "replay": (
        "simulator.virtual.cli",
        "replay a pod trace under the cache policies in virtual time and compare them",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="image-sync",
        description="Keep the images a Kubernetes cluster uses present on every node that may run them.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.add_argument(
            "--config",
            metavar="FILE",
            help="YAML config file (default: $IMAGE_SYNC_CONFIG); IMAGE_SYNC_* variables override it",
        )
        module.add_arguments(command)
        command.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"image-sync {args.command}: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    result: int = args._module.run(args, config)
    return result


if __name__ == "__main__":
    sys.exit(main())

"""The `image-sync` console script: one subcommand per component, each wired in its own module."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from imagesync import logs
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

# Subcommands shipped as the `image-sync[sim]` extra (the simulated cluster is a test and
# demo tool, not in the container image): the modules each one needs.
SIM_EXTRA = "sim"
SIM_MODULES = ("simulator", "jsonpatch", "jsonschema")
NEEDS_SIM = frozenset({"sim", "demo", "replay"})


def missing_extra() -> list[str]:
    """The modules of the `sim` extra this installation lacks."""
    return [name for name in SIM_MODULES if importlib.util.find_spec(name) is None]


def _extra_hint(command: str, missing: list[str]) -> SimpleNamespace:
    """Stands in for a subcommand whose extra is not installed: says how to install it."""

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        del parser  # whatever follows is the missing subcommand's: main() lets it through

    def run(args: argparse.Namespace, config: object) -> int:
        del args, config
        print(
            f"image-sync {command}: the simulated cluster is not installed (missing: "
            f"{', '.join(missing)}); install it with: pip install 'image-sync[{SIM_EXTRA}]'",
            file=sys.stderr,
        )
        return 2

    return SimpleNamespace(add_arguments=add_arguments, run=run, takes_any_arguments=True)


def chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line, if any (the first word not an option)."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `only`, imports that subcommand's module alone.

    Importing a subcommand's module may import others' dependencies; the webhook must point
    prometheus_client at its multiprocess directory before anything imports it, so a run
    imports nothing but its own subcommand.
    """
    parser = argparse.ArgumentParser(
        prog="image-sync",
        description="Keep the images a Kubernetes cluster uses present on every node that may run them.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    missing = missing_extra()
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module: Any
        if only is not None and name != only:
            sub.add_parser(name, help=help_text)  # listed in the help; not imported
            continue
        if name in NEEDS_SIM and missing:
            module = _extra_hint(name, missing)
            help_text += f" (needs image-sync[{SIM_EXTRA}])"
        else:
            module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=help_text)
        command.add_argument(
            "--config",
            metavar="FILE",
            help="YAML config file (default: $IMAGE_SYNC_CONFIG); IMAGE_SYNC_* variables override it",
        )
        logs.add_argument(command)
        module.add_arguments(command)
        command.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    command = chosen_command(words)
    parser = build_parser(command if command in SUBCOMMANDS else None)
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args._module, "takes_any_arguments", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"image-sync {args.command}: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(config.log_level, args.log_format or config.log_format)
    result: int = args._module.run(args, config)
    return result


if __name__ == "__main__":
    sys.exit(main())

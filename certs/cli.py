"""Command line of `image-sync certs`: arguments only; the work is imported when it runs."""

from __future__ import annotations

import argparse
import sys

from imagesync.config import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser


def run(args: argparse.Namespace, config: Config) -> int:
    del args, config
    print("image-sync: this subcommand is not implemented yet", file=sys.stderr)
    return 1

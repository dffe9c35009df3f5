"""Command line of `image-sync demo`: arguments only; the work is imported when it runs."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from imagesync.config import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--once",
        action="store_true",
        help="exit after the summary instead of serving the report until Ctrl-C",
    )
    parser.add_argument(
        "--scenario",
        default="gpu-day",
        metavar="NAME|FILE",
        help="workload to replay (default gpu-day: the gpu-cluster scenario through a working day)",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=60.0,
        metavar="X",
        help="simulated seconds per wall second (default 60: one simulated hour per minute)",
    )
    parser.add_argument(
        "--summary-json",
        metavar="FILE",
        help="also write the summary's figures as JSON to FILE",
    )
    parser.add_argument(
        "--workdir",
        metavar="DIR",
        help="keep certificates, kubeconfigs and process logs in DIR (default: a temp dir)",
    )


def _config_file(given: str | None) -> Path | None:
    """`--config`, else `$IMAGE_SYNC_CONFIG`: handed on to the webhook and the prefetcher."""
    path = given or os.environ.get("IMAGE_SYNC_CONFIG")
    return Path(path).resolve() if path else None


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM ends the demo like Ctrl-C: through the cleanup of everything it started."""
    del signum, frame
    raise KeyboardInterrupt


def run(args: argparse.Namespace, config: Config) -> int:
    del config  # read by the webhook and the prefetcher themselves, from the same file
    # The demo reads manifests/ and bench/ from the checkout it runs from.
    root = str(Path(__file__).resolve().parent.parent)
    if root not in sys.path:
        sys.path.insert(0, root)
    from simulator.demo import DemoError, run_demo

    # Ctrl-C must reach the demo even when it was started with SIGINT ignored (a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return run_demo(
            once=args.once,
            scenario=args.scenario,
            speed=args.speed,
            out=sys.stdout,
            summary_json=Path(args.summary_json) if args.summary_json else None,
            workdir=Path(args.workdir) if args.workdir else None,
            config_file=_config_file(args.config),
        )
    except DemoError as exc:
        print(f"image-sync demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nimage-sync demo: stopped; every process it started has ended.", file=sys.stderr)
        return 130

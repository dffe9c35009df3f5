"""Log lines of every image-sync process: text for people, or one JSON object per line for log pipelines.

In JSON each record is an object with `time` (UTC, ISO 8601), `level`, `logger` and
`message`, then the fields the code passed with `extra=` (`node`, `image`, `reason`, ...)
and `exc_info` for a traceback. The formatter is python-json-logger's, on orjson.
"""

from __future__ import annotations

import argparse
import logging
import time

from pythonjsonlogger.orjson import OrjsonFormatter

TEXT = "text"
JSON = "json"
FORMATS = (TEXT, JSON)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonLineFormatter(OrjsonFormatter):
    """Records as JSON objects whose first keys are time (UTC, milliseconds), level, logger, message."""

    converter = staticmethod(time.gmtime)
    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"


def formatter(log_format: str) -> logging.Formatter:
    if log_format == JSON:
        return JsonLineFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    return logging.Formatter(TEXT_FORMAT)


def configure(level: str, log_format: str) -> None:
    """One stderr handler on the root logger, replacing any; every logger (gunicorn's too) uses it."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(log_format))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def add_argument(parser: argparse.ArgumentParser) -> None:
    """`--log-format`, which overrides the `logFormat` key (`IMAGE_SYNC_LOG_FORMAT`)."""
    parser.add_argument(
        "--log-format",
        choices=FORMATS,
        help="text (default) or json, one object per line; overrides logFormat / "
        "$IMAGE_SYNC_LOG_FORMAT",
    )

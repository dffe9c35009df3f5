"""Reading `--log-format json` output in tests: every line one object with the agreed keys."""

from __future__ import annotations

import json
import re
from typing import Any

UTC_MILLIS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LEVELS = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}


def records(output: str) -> list[dict[str, Any]]:
    """The log records in `output`; fails on any line that is not such an object."""
    out = []
    for line in output.splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        assert isinstance(record, dict), line
        assert list(record)[:4] == ["time", "level", "logger", "message"], line
        assert UTC_MILLIS.match(record["time"]), line
        assert record["level"] in LEVELS, line
        out.append(record)
    return out

"""Raw JSON calls through the `kubernetes` client, with every response read and released.

The simulator's components skip the client's model classes (too slow for tens of thousands
of pods) by asking for the raw response; that response must then be read and given back to
the connection pool, or each call leaves a connection (and a server thread) behind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

MERGE = "application/merge-patch+json"


def call(method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call a `kubernetes` client method and return its JSON body as plain data (None if empty)."""
    response = method(*args, _preload_content=False, **kwargs)
    try:
        data = response.data
    finally:
        response.release_conn()
    return orjson.loads(data) if data else None


def send(method: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """A write whose answer nobody reads (a status patch answers with the whole object):
    the response is read and released, not decoded."""
    response = method(*args, _preload_content=False, **kwargs)
    try:
        response.data  # noqa: B018 - read to the end so the connection can be reused
    finally:
        response.release_conn()

"""HTTPS calls to admission webhooks: verified TLS to a service DNS name on a loopback
address, with kept-alive connections and cached TLS contexts (as the real server reuses
its webhook clients), so a burst of pod creations does not pay a handshake per pod."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]
PoolKey = tuple[str, int, str, str]


@dataclass(frozen=True)
class Target:
    """Where to connect and which name the certificate must carry."""

    host: str
    port: int
    server_name: str
    path: str
    url: str


@dataclass
class WebhookClient:
    max_idle_per_target: int = 8
    _contexts: dict[str, ssl.SSLContext] = field(default_factory=dict)
    _idle: dict[PoolKey, list[http.client.HTTPConnection]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _context(self, ca_bundle: str | None) -> tuple[str, ssl.SSLContext]:
        key = hashlib.sha256((ca_bundle or "").encode()).hexdigest()
        with self._lock:
            ctx = self._contexts.get(key)
        if ctx is None:
            if ca_bundle:
                ctx = ssl.create_default_context(cadata=base64.b64decode(ca_bundle).decode())
            else:
                ctx = ssl.create_default_context()
            with self._lock:
                self._contexts[key] = ctx
        return key, ctx

    def _connect(
        self, target: Target, ctx: ssl.SSLContext, timeout: float
    ) -> http.client.HTTPConnection:
        raw = socket.create_connection((target.host, target.port), timeout=timeout)
        try:
            sock = ctx.wrap_socket(raw, server_hostname=target.server_name)
        except BaseException:
            raw.close()
            raise
        conn = http.client.HTTPConnection(target.server_name, target.port, timeout=timeout)
        conn.sock = sock
        return conn

    def post(self, target: Target, ca_bundle: str | None, review: Obj, timeout: float) -> Any:
        """POST the review; returns the decoded answer (raises OSError/ValueError/HTTPException)."""
        ctx_key, ctx = self._context(ca_bundle)
        pool_key = (target.host, target.port, target.server_name, ctx_key)
        sep = "&" if "?" in target.path else "?"
        path = f"{target.path}{sep}timeout={int(timeout)}s"
        body = json.dumps(review).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        with self._lock:
            idle = self._idle.get(pool_key) or []
            conn = idle.pop() if idle else None
        reused = conn is not None
        while True:
            if conn is None:
                conn = self._connect(target, ctx, timeout)
            assert conn.sock is not None
            conn.sock.settimeout(timeout)
            try:
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                if reused:  # the server closed a kept-alive connection: once more, fresh
                    conn, reused = None, False
                    continue
                raise
            break
        if resp.will_close:
            conn.close()
        else:
            with self._lock:
                pool = self._idle.setdefault(pool_key, [])
                if len(pool) < self.max_idle_per_target:
                    pool.append(conn)
                else:
                    conn.close()
        if resp.status != 200:
            raise ValueError(f"webhook returned HTTP {resp.status}")
        return json.loads(data)

    def close(self) -> None:
        with self._lock:
            pools, self._idle = self._idle, {}
        for conns in pools.values():
            for conn in conns:
                conn.close()

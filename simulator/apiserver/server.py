"""`ApiServer`: the handle other code starts and stops — wires the store, the REST core,
admission, the garbage collector and fault injection to the HTTP server on loopback."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .admission import Admission, ServiceMap
from .api import Core
from .collector import Collector
from .faults import FaultRule, Faults
from .handler import HTTPServer
from .resources import ResourceRegistry
from .store import Store

Obj = dict[str, Any]


@dataclass(frozen=True)
class TLSConfig:
    """Serve HTTPS with this certificate and key (PEM files)."""

    cert_file: str
    key_file: str
    ca_file: str | None = None  # written into the kubeconfig when given


class ApiServer:
    """A Kubernetes-compatible API server on loopback.

    `start()` returns once it is listening; `url` is then usable with any Kubernetes client.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: TLSConfig | None = None,
        *,
        history_size: int = 100_000,
        bookmark_interval: float = 60.0,
        default_watch_timeout: float = 1800.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`clock`: epoch seconds for the timestamps the server writes (`creationTimestamp`,
        `deletionTimestamp`, ...); a simulated cluster passes its simulated clock."""
        self.host = host
        self.port = port
        self.tls = tls
        self.store = Store(history_size=history_size)
        self.services = ServiceMap()
        self.admission = Admission(self.store, self.services)
        self.core = Core(
            registry=ResourceRegistry(),
            store=self.store,
            admit=self.admission,
            validate_admission=self.admission.validate,
            admission_wanted=self.admission.wants,
            bookmark_interval=bookmark_interval,
            default_watch_timeout=default_watch_timeout,
            clock=clock,
        )
        self.collector = Collector(self.core)
        self.faults = Faults()
        self._httpd: HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    def start(self) -> None:
        httpd = HTTPServer((self.host, self.port), self.core, self.faults)
        if self.tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self.tls.cert_file, self.tls.key_file)
            httpd.socket = ctx.wrap_socket(
                httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self.port = int(httpd.server_address[1])
        self._httpd = httpd
        self.collector.start()
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="apiserver", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and end every open watch."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        for watcher in self.store.watchers():
            watcher.close()
        self._httpd.server_close()
        self.collector.stop()
        self.admission.client.close()
        self._httpd = None

    def __enter__(self) -> ApiServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kubeconfig(self, context: str = "image-sync-sim") -> Obj:
        cluster: Obj = {"server": self.url}
        if self.tls is not None:
            if self.tls.ca_file:
                cluster["certificate-authority"] = str(Path(self.tls.ca_file).resolve())
            else:
                cluster["insecure-skip-tls-verify"] = True
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": cluster}],
            "users": [{"name": context, "user": {"token": "image-sync-sim"}}],
            "contexts": [
                {
                    "name": context,
                    "context": {"cluster": context, "user": context, "namespace": "default"},
                }
            ],
            "current-context": context,
            "preferences": {},
        }

    def write_kubeconfig(self, path: str | Path, context: str = "image-sync-sim") -> Path:
        """Write a kubeconfig for kubectl and the kubernetes client; returns its path."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(yaml.safe_dump(self.kubeconfig(context), sort_keys=False))
        return out

    # --- test hooks ----------------------------------------------------------------------

    def map_service(
        self, namespace: str, name: str, host: str, port: int, service_port: int | None = None
    ) -> None:
        """Route webhook calls for Service NAMESPACE/NAME (optionally only one port) to HOST:PORT."""
        self.services.set(namespace, name, host, port, service_port)

    def set_faults(self, rules: list[FaultRule], seed: int = 0) -> None:
        self.faults.set(rules, seed)

    def add_fault(self, rule: FaultRule) -> None:
        self.faults.add(rule)

    def clear_faults(self) -> None:
        self.faults.clear()

    def wait_for_gc(self) -> None:
        """Block until the garbage collector has handled every change made so far."""
        self.collector.drain()

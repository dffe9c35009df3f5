"""gunicorn as a library: the webhook over TLS 1.2+, several workers, keep-alive, cert reload.

Why these settings:
- `gthread` workers: keep-alive connections wait in a poller instead of holding a thread,
  so the API server's long-lived connections cost nothing while idle, and one slow client
  cannot starve the others.
- keep-alive longer than the API server's idle timeout (90 s), so it is always the client
  that closes an idle connection; a server-side close racing a new request would fail that
  admission call (and leave that pod unmutated).
- The app is built in each worker after the fork (no preload): the learner's thread and
  its API client belong to the worker that records.

Certificate renewal: gunicorn asks the `ssl_context` hook for a context on every new
connection. `CertificateReloader` answers from a cache keyed on the certificate and key
files' identity (inode, size, mtime), so a renewed pair — a new Secret revision swapped in
by the kubelet, or files rewritten by `image-sync certs` — is used from the next connection
on, in every worker, with no restart; connections already open finish with the old one.
If the new pair cannot be loaded (say, the key is not written yet, or the certificate does
not match the key) the old context stays in use and the load is retried on the next
connection. A worker never starts without a context: the arbiter loads the pair before each
fork (`pre_fork`) and the worker inherits it, then the worker loads the current pair once
more before its first connection (`post_worker_init`). Without that, a worker whose first
connection came while a half-written pair was on disk had nothing to fall back on, and
gunicorn answered that TLS client in plaintext. A SIGHUP to the arbiter also works
(gunicorn replaces workers gracefully) but is not needed.
"""

from __future__ import annotations

import logging
import os
import shutil
import ssl
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger as GunicornLogger

from imagesync.config import Config

log = logging.getLogger(__name__)

WsgiApp = Callable[..., Any]
AppLoader = Callable[[Config, "ServerOptions"], WsgiApp]
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # read by prometheus_client at import time
DEFAULT_BIND = "0.0.0.0:8443"


@dataclass(frozen=True)
class ServerOptions:
    certfile: str
    keyfile: str
    bind: str = DEFAULT_BIND
    workers: int = 2
    threads: int = 4
    keepalive: int = 120
    graceful_timeout: int = 20
    timeout: int = 30
    kubeconfig: str | None = None
    learning: bool = True


FileStamp = tuple[int, int, int]


def _stamp(path: str) -> FileStamp:
    info = os.stat(path)  # follows symlinks: a Secret volume swaps its `..data` link
    return (info.st_ino, info.st_size, info.st_mtime_ns)


class CertificateReloader:
    """gunicorn `ssl_context` hook: one cached context per worker, rebuilt when the files change."""

    def __init__(self, minimum_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2) -> None:
        self._minimum_version = minimum_version
        self._lock = threading.Lock()
        self._context: ssl.SSLContext | None = None
        self._stamps: tuple[FileStamp, FileStamp] | None = None

    def __call__(self, conf: Any, default_factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        try:
            stamps = (_stamp(conf.certfile), _stamp(conf.keyfile))
        except OSError as exc:
            if self._context is None:
                raise
            log.warning("cannot stat the certificate files, keeping the loaded ones: %s", exc)
            return self._context
        with self._lock:
            if self._context is not None and stamps == self._stamps:
                return self._context
            try:
                context = default_factory()
            except (OSError, ssl.SSLError) as exc:
                if self._context is None:
                    raise
                log.warning("cannot load the renewed certificate, keeping the current one: %s", exc)
                return self._context
            context.minimum_version = self._minimum_version
            if self._context is not None:
                log.info("loaded the renewed certificate %s", conf.certfile)
            self._context, self._stamps = context, stamps
            return context


class RootLogger(GunicornLogger):  # type: ignore[misc]
    """gunicorn's own messages (booting, workers, errors) through the root handler, so every
    line of the webhook has one format: text, or JSON with `--log-format json`."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for logger in (self.error_log, self.access_log):
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True


def webhook_app(config: Config, options: ServerOptions) -> WsgiApp:
    """Build the webhook in a worker: metrics, the learner (when an API server is known), Flask."""
    from webhook.app import create_app
    from webhook.metrics import Metrics
    from webhook.recorder import build_recorder

    metrics = Metrics()
    recorder = build_recorder(config, options.kubeconfig, metrics) if options.learning else None
    return create_app(config, recorder, metrics)


def _load_tls(conf: Any, when: str) -> None:
    """Load the current pair through the `ssl_context` hook (the reloader), now rather than later."""
    if not conf.is_ssl:
        return
    from gunicorn.sock import ssl_context

    try:
        ssl_context(conf)
    except (OSError, ssl.SSLError) as exc:
        # No good pair seen yet: the worker tries again on each connection.
        log.warning("cannot load the certificate %s: %s", when, exc)


def _pre_fork(server: Any, worker: Any) -> None:
    """In the arbiter: the worker about to be forked inherits the newest good context."""
    del worker
    _load_tls(server.cfg, "before starting a worker")


def _post_worker_init(worker: Any) -> None:
    """In a new worker, before its first connection: use the pair on disk now, if it loads."""
    _load_tls(worker.cfg, "at worker start")
    log.info("worker %d ready", os.getpid())


def _worker_exit(server: Any, worker: Any) -> None:
    """In the exiting worker: write what the learner still holds."""
    del server
    app = getattr(worker, "wsgi", None)
    if app is None:
        return
    from webhook.app import EXTENSION

    webhook = getattr(app, "extensions", {}).get(EXTENSION)
    recorder = getattr(webhook, "recorder", None)
    if recorder is None:
        return
    try:
        result = recorder.close()
        if result.written or result.failed:
            log.info("final learner flush: %d written, %d failed", result.written, result.failed)
    except Exception:
        log.exception("final learner flush failed")


def _child_exit(server: Any, worker: Any) -> None:
    """In the arbiter: a dead worker's live gauges no longer count."""
    del server
    from webhook.metrics import mark_process_dead

    mark_process_dead(worker.pid)


class WebhookServer(BaseApplication):  # type: ignore[misc]
    """A gunicorn application whose settings come from ServerOptions, not a config file."""

    def __init__(
        self, options: ServerOptions, config: Config, app_loader: AppLoader = webhook_app
    ) -> None:
        self.options = options
        self.config = config
        self.app_loader = app_loader
        super().__init__(prog="image-sync webhook")

    def settings(self) -> dict[str, Any]:
        options = self.options
        return {
            "bind": [options.bind],
            "workers": options.workers,
            "worker_class": "gthread",
            "threads": options.threads,
            "keepalive": options.keepalive,
            "timeout": options.timeout,
            "graceful_timeout": options.graceful_timeout,
            "certfile": options.certfile,
            "keyfile": options.keyfile,
            "ssl_context": CertificateReloader(),
            "preload_app": False,
            "accesslog": None,
            "logger_class": RootLogger,
            "loglevel": self.config.log_level,
            "proc_name": "image-sync-webhook",
            # No runtime control socket: nothing uses it, and a read-only root filesystem
            # (or two servers on one machine) would trip over its default path.
            "control_socket_disable": True,
            # Worker heartbeat files in memory when possible: no writable disk needed.
            "worker_tmp_dir": "/dev/shm" if os.path.isdir("/dev/shm") else None,
            "pre_fork": _pre_fork,
            "post_worker_init": _post_worker_init,
            "worker_exit": _worker_exit,
            "child_exit": _child_exit,
        }

    def load_config(self) -> None:
        for key, value in self.settings().items():
            self.cfg.set(key, value)

    def load(self) -> WsgiApp:
        return self.app_loader(self.config, self.options)


def prepare_multiprocess_dir() -> tuple[str, bool]:
    """Point prometheus_client at a directory of per-worker files; returns (dir, created).

    A directory given by the environment is emptied first (an emptyDir outlives a container
    restart, and stale files would resurrect old counts); otherwise a temporary one is made.
    Must run before anything imports prometheus_client.
    """
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        os.makedirs(given, exist_ok=True)
        for name in os.listdir(given):
            if name.endswith(".db"):
                os.unlink(os.path.join(given, name))
        return given, False
    path = tempfile.mkdtemp(prefix="image-sync-metrics-")
    os.environ[MULTIPROC_ENV] = path
    return path, True


def serve(options: ServerOptions, config: Config, app_loader: AppLoader = webhook_app) -> int:
    """Run gunicorn until it is told to stop (SIGTERM/SIGINT); returns the exit status."""
    path, created = prepare_multiprocess_dir()
    try:
        WebhookServer(options, config, app_loader).run()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        if created:
            shutil.rmtree(path, ignore_errors=True)
    return 0

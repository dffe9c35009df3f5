"""The prefetcher process: the one place where its parts are built and wired together.

`image-sync prefetcher` (and `python -m prefetcher`) end up in `serve()`. Tests and the
benchmark build a `Prefetcher` directly, with their own API client, clock and bind address.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from types import FrameType
from typing import Any

from kubernetes import client

from imagesync import logs
from imagesync.cachedimage import format_time
from imagesync.config import Config, ConfigError, load_config
from imagesync.kubeclient import KubeError, load_api_client
from prefetcher.controller import Controller, PlanFn, WriteHook
from prefetcher.informer import Clock, InformerSettings, SystemClock
from prefetcher.kube import Kube
from prefetcher.leader import LeaderElector, LeaseSettings
from prefetcher.memory import allocator_note
from prefetcher.metrics import Metrics
from prefetcher.model import Plan
from prefetcher.report import SweepInfo, learning_section
from prefetcher.report_cache import ReportCache
from prefetcher.report_query import ReportQuery
from prefetcher.server import ReportServer, create_app, metrics_only_app, parse_bind
from prefetcher.sources.catalog import CatalogReader

log = logging.getLogger("prefetcher")


def default_identity() -> str:
    """The pod name in a cluster (Downward API), else host and process id."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


# Passes that raise this many times in a row (a defect, not an API outage: those end a pass
# early without raising) make /healthz fail, so the liveness probe restarts the replica.
FAILING_PASSES_UNHEALTHY = 3


def lease_client(api_client: client.ApiClient) -> client.ApiClient:
    """A client for Lease calls that tries each request once: urllib3 would retry a timed-out
    read three times, stretching a bounded call fourfold; the elector's next round retries."""
    configuration = copy.deepcopy(api_client.configuration)
    configuration.retries = 0
    return client.ApiClient(configuration)


class Prefetcher:
    """Informers, controller, leader election and the report server of one replica."""

    def __init__(
        self,
        api_client: client.ApiClient,
        config: Config,
        *,
        clock: Clock | None = None,
        identity: str | None = None,
        bind: tuple[str, int] | None = ("0.0.0.0", 8080),
        metrics_bind: tuple[str, int] | None = None,
        informer_settings: InformerSettings | None = None,
        plan_fn: PlanFn | None = None,
        before_write: WriteHook | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.identity = identity or default_identity()
        self.metrics = Metrics()
        self.kube = Kube(
            api_client,
            config.namespace,
            pod_namespace=config.pod_namespace,
            on_call=self.metrics.api_call,
        )
        self._stop = threading.Event()
        self.elector: LeaderElector | None = None
        if config.leader_election:
            self.elector = LeaderElector(
                Kube(lease_client(api_client), config.namespace, on_call=self.metrics.api_call),
                self.identity,
                clock=self.clock,
                settings=LeaseSettings(
                    name=config.lease_name,
                    lease_duration=config.lease_duration,
                    renew_deadline=config.lease_renew_deadline,
                    retry_period=config.lease_retry_period,
                ),
                on_change=lambda leading: self.metrics.leader.set(int(leading)),
            )
        else:
            self.metrics.leader.set(1)
        self.catalog: CatalogReader | None = None
        if config.sources:
            self.catalog = CatalogReader(
                config,
                clock=self.clock,
                read_secret=self.kube.read_secret,
                wanted=lambda: self.controller.images.items(),
                metrics=self.metrics,
                on_change=lambda: self.controller.trigger("registry catalog read"),
                is_leader=self.is_leader,
            )
        self.controller = Controller(
            self.kube,
            config,
            clock=self.clock,
            metrics=self.metrics,
            plan_fn=plan_fn,
            is_leader=self.is_leader,
            informer_settings=informer_settings,
            before_write=before_write,
            catalog=self.catalog,
            prepare_report=lambda plan: self.reports.prepare(plan),
        )
        self.reports = ReportCache()
        self.server: ReportServer | None = None
        self.metrics_server: ReportServer | None = None
        if bind is not None:
            app = create_app(
                report_json=self.report_json,
                report_html=self.report_html,
                healthy=self.healthy,
                registry=None if metrics_bind else self.metrics.registry,
            )
            self.server = ReportServer(app, *bind)
        if metrics_bind is not None:
            self.metrics_server = ReportServer(
                metrics_only_app(self.metrics.registry), *metrics_bind, name="metrics"
            )
        self._elector_thread: threading.Thread | None = None
        self._catalog_thread: threading.Thread | None = None

    def is_leader(self) -> bool:
        return self.elector is None or self.elector.leading()

    def start(self) -> None:
        for server in (self.server, self.metrics_server):
            if server is not None:
                server.start()
        if self.elector is not None:
            thread = threading.Thread(
                target=self.elector.run, args=(self._stop,), name="leader", daemon=True
            )
            thread.start()
            self._elector_thread = thread
        self.controller.start()
        if self.catalog is not None:
            thread = threading.Thread(
                target=self.catalog.run, args=(self._stop,), name="catalog", daemon=True
            )
            thread.start()
            self._catalog_thread = thread

    def stop(self, *, release: bool = True) -> None:
        """Stop every part; `release=False` leaves the Lease held, as a crash would."""
        if self.elector is not None:
            self.elector.release_on_stop = release
        self._stop.set()
        self.controller.stop()
        for thread in (self._elector_thread, self._catalog_thread):
            if thread is not None:
                thread.join(timeout=10)
        for server in (self.server, self.metrics_server):
            if server is not None:
                server.stop()

    def wait(self) -> None:
        self._stop.wait()

    def request_stop(self) -> None:
        self._stop.set()

    def healthy(self) -> tuple[bool, str]:
        """Alive unless the loop died; says what it is doing."""
        if not self.controller.alive() and not self._stop.is_set():
            return False, "controller loop stopped"
        thread = self._elector_thread
        if thread is not None and not thread.is_alive() and not self._stop.is_set():
            return False, "leader election stopped"
        if self.controller.failing_passes >= FAILING_PASSES_UNHEALTHY:
            return False, f"the last {self.controller.failing_passes} passes failed (see the log)"
        if not self.controller.synced():
            return True, "starting: filling caches"
        return True, "leader" if self.is_leader() else "standby"

    def runtime(self) -> dict[str, Any]:
        """What the runtime knows that a plan does not: leadership, passes, API errors."""
        controller = self.controller
        elector = self.elector
        return {
            "identity": self.identity,
            "leader": self.is_leader(),
            "leaseHolder": elector.holder if elector is not None else self.identity,
            "started": format_time(datetime.fromtimestamp(controller.started, UTC)),
            "synced": controller.synced(),
            "passes": controller.passes,
            "lastPass": controller.last_pass.as_dict() if controller.last_pass else None,
            "lastSweep": controller.last_sweep.as_dict() if controller.last_sweep else None,
            "sweepInterval": self.config.sweep_interval,
            "apiErrors": controller.api_errors,
            "recentErrors": list(controller.errors),
            "badObjects": {kind: dict(bad) for kind, bad in controller.bad_objects.items() if bad},
            "pullPolicyRewriteUndone": controller.rewrites.as_dict(),
            "nodeWarmSeconds": dict(controller.warm_nodes.times),
            "watches": {
                informer.kind: {
                    "objects": len(informer),
                    "relists": informer.relists,
                    "watches": informer.watches,
                }
                for informer in controller.informers
            },
        }

    def _report_plan(self) -> tuple[Plan, SweepInfo | None]:
        plan, info = self.controller.report_plan()
        if info is None:
            return plan, None
        return plan, SweepInfo(
            started=info.started,
            seconds=info.seconds,
            trigger=info.trigger,
            done=dict(info.actions),
            errors=tuple(self.controller.errors)[-5:] if info.api_errors else (),
        )

    def report(self) -> dict[str, Any]:
        """The core's report of the last plan, with what the runtime did and knows."""
        return {**self.reports.report(*self._report_plan()), **self._report_extra()}

    def report_json(self, query: ReportQuery) -> list[bytes]:
        """`GET /report`: the report narrowed by `query`, serialized (in parts)."""
        return self.reports.json_chunks(*self._report_plan(), query, self._report_extra())

    def _report_extra(self) -> dict[str, Any]:
        """What the runtime adds to the planner's report: itself, the image sources, and
        what the learning bounds left out."""
        return {
            "runtime": self.runtime(),
            "sources": self.controller.sources.report(),
            "learning": learning_section(self.controller.learned_selection, self.config),
        }

    def report_html(self, query: ReportQuery) -> str:
        """`GET /`: the report page."""
        return self.reports.html(*self._report_plan(), query, self._report_extra())


def serve(args: argparse.Namespace, config: Config) -> int:
    """Run until SIGTERM / SIGINT; then release the lease and stop cleanly."""
    try:
        host, port = parse_bind(args.bind)
        metrics_bind = parse_bind(args.metrics_bind) if args.metrics_bind else None
    except ValueError as exc:
        print(f"image-sync prefetcher: --bind / --metrics-bind: {exc}", file=sys.stderr)
        return 2
    try:
        api_client = load_api_client(args.kubeconfig)
    except KubeError as exc:
        print(f"image-sync prefetcher: {exc}", file=sys.stderr)
        return 1
    try:
        prefetcher = Prefetcher(
            api_client,
            config,
            identity=args.identity or None,
            bind=(host, port),
            metrics_bind=metrics_bind,
        )
    except OSError as exc:
        where = args.bind + (f" / {args.metrics_bind}" if args.metrics_bind else "")
        print(f"image-sync prefetcher: cannot listen on {where}: {exc}", file=sys.stderr)
        return 1

    def on_signal(signum: int, frame: FrameType | None) -> None:
        del frame
        log.info("received %s; shutting down", signal.Signals(signum).name)
        prefetcher.request_stop()

    def on_hangup(signum: int, frame: FrameType | None) -> None:
        del signum, frame
        log.info("received SIGHUP; sweeping now")
        prefetcher.controller.request_sweep()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hangup)
    log.info(
        "prefetcher %s starting in namespace %s, pods in %s (leader election %s)",
        prefetcher.identity,
        config.namespace,
        config.pod_namespace,
        "on" if config.leader_election else "off",
    )
    if note := allocator_note():
        log.info(note)
    prefetcher.start()
    prefetcher.wait()
    prefetcher.stop()
    log.info("prefetcher stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from prefetcher import cli

    parser = argparse.ArgumentParser(prog="python -m prefetcher")
    parser.add_argument("--config", metavar="FILE")
    logs.add_argument(parser)
    cli.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"prefetcher: configuration error: {exc}", file=sys.stderr)
        return 2
    logs.configure(config.log_level, args.log_format or config.log_format)
    return serve(args, config)


if __name__ == "__main__":
    sys.exit(main())

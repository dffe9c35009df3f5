"""A renewed serving certificate is used from the next connection on, without failed requests."""

from __future__ import annotations

import re
import socket
import ssl
import threading
import time
from pathlib import Path

import requests
from cryptography import x509

from tests.webhook.conftest import Tls, WebhookProcess, make_tls, start_webhook
from tests.webhook.pods import HARBOR, deployment_pod, review

LOAD_THREADS = 4


def served_serial(webhook: WebhookProcess) -> int:
    """The serial number of the certificate a brand-new connection is given."""
    context = ssl.create_default_context(cafile=webhook.tls.ca_file)
    with (
        socket.create_connection(("127.0.0.1", webhook.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls_sock,
    ):
        der = tls_sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def wait_until_workers_ready(webhook: WebhookProcess, workers: int) -> None:
    """/healthz answers once one worker is up; a renewal test needs all of them serving."""
    deadline = time.monotonic() + 60
    while len(set(re.findall(r"worker (\d+) ready", webhook.log()))) < workers:
        assert time.monotonic() < deadline, webhook.log()
        time.sleep(0.05)


class Load:
    """Requests in a loop until stopped: half on kept-alive connections, half on new ones."""

    def __init__(self, webhook: WebhookProcess) -> None:
        self.webhook = webhook
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures: list[str] = []
        self.threads = [
            threading.Thread(target=self.run, args=(i % 2 == 0,)) for i in range(LOAD_THREADS)
        ]

    def run(self, keep_alive: bool) -> None:
        session = requests.Session()
        body = review(deployment_pod(f"{HARBOR}/team/api:1", "Always"))
        while not self.stop.is_set():
            if not keep_alive:
                session.close()
                session = requests.Session()
            try:
                answer = session.post(
                    f"{self.webhook.url}/mutate",
                    json=body,
                    verify=self.webhook.tls.ca_file,
                    timeout=10,
                )
                good = answer.status_code == 200 and answer.json()["response"]["allowed"] is True
                outcome = "" if good else f"HTTP {answer.status_code}"
            except requests.RequestException as exc:
                outcome = repr(exc)
            with self.lock:
                if outcome:
                    self.failures.append(outcome)
                else:
                    self.ok += 1
        session.close()

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def wait_for(self, count: int) -> None:
        """Block until `count` more requests succeeded (progress, not time, is what matters)."""
        with self.lock:
            target = self.ok + count
        while True:
            with self.lock:
                if self.ok >= target or self.failures:
                    return
            self.stop.wait(0.01)

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def test_renewed_certificate_is_picked_up_without_failed_requests(tmp_path: Path) -> None:
    tls: Tls = make_tls(tmp_path / "tls")
    server = start_webhook(tmp_path, tls, workers=2)
    try:
        wait_until_workers_ready(server, 2)
        first = served_serial(server)
        with Load(server) as load:
            load.wait_for(50)
            renewed = tls.issue()
            # Every new connection, whichever worker accepts it, now gets the renewed certificate.
            assert {served_serial(server) for _ in range(12)} == {renewed.cert.serial_number}
            load.wait_for(50)

            # A half-written pair (certificate and key do not match) is not loaded: the current
            # certificate stays in use and requests keep succeeding.
            Path(tls.cert_file).write_bytes(tls.ca.cert_pem)
            assert {served_serial(server) for _ in range(6)} == {renewed.cert.serial_number}
            load.wait_for(50)
            again = tls.issue()
            assert {served_serial(server) for _ in range(6)} == {again.cert.serial_number}
            load.wait_for(50)
        assert load.failures == []
        assert load.ok >= 200
        assert first != renewed.cert.serial_number
        assert "cannot load the renewed certificate" in server.log()
    finally:
        assert server.stop() == 0


def test_a_worker_that_has_served_nothing_yet_keeps_the_good_pair(tmp_path: Path) -> None:
    tls: Tls = make_tls(tmp_path / "tls")
    server = start_webhook(tmp_path, tls, workers=2)
    try:
        # Only /healthz has been served, by one worker: the other has had no connection yet,
        # and may not even have finished booting.
        first = x509.load_pem_x509_certificate(Path(tls.cert_file).read_bytes()).serial_number
        Path(tls.cert_file).write_bytes(tls.ca.cert_pem)
        wait_until_workers_ready(server, 2)
        # Whichever worker accepts a connection answers with the good pair.
        assert {served_serial(server) for _ in range(20)} == {first}
    finally:
        assert server.stop() == 0

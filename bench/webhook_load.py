"""Sustained load on POST /mutate over TLS with keep-alive, next to an allow-all floor.

Both servers run under the same gunicorn settings (`webhook.server`: gthread workers, TLS
with the certificate-reloading context, keep-alive); the floor is a Flask handler that
only parses the review and answers `allowed: true`, so the difference is what image-sync's
own work costs. The floor parses with the standard library's `json` (the reference the
80 % target was set against); `--floor-json orjson` gives it the webhook's codec, so the
difference excludes the codec too. The webhook runs with learning on, writing to an in-memory store, so the
request-path cost of recording and the flusher thread's CPU are included.

The load comes from separate processes (multiprocessing), each thread holding one
persistent HTTPS connection:

1. fixed rate (default 500 requests/s, open loop: each connection sends on a schedule), for
   the latency percentiles at the target rate;
2. saturation (closed loop: every connection sends as soon as it has its answer), for the
   maximum throughput.

Run: `.venv/bin/python bench/webhook_load.py [--duration 20] [--rate 500] [--workers 2]`.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.webhook_load_generator import connect, run_load  # noqa: E402
from bench.webhook_load_servers import serve  # noqa: E402


def make_certs(directory: Path) -> tuple[str, str, str]:
    from certs.generate import generate_ca, issue_serving_cert

    now = datetime.now(UTC)
    ca = generate_ca(now)
    leaf = issue_serving_cert(ca, ["localhost"], [ipaddress.ip_address("127.0.0.1")], now=now)
    paths = (directory / "ca.crt", directory / "tls.crt", directory / "tls.key")
    for path, data in zip(paths, (ca.cert_pem, leaf.cert_pem, leaf.key_pem), strict=True):
        path.write_bytes(data)
    return tuple(str(p) for p in paths)  # type: ignore[return-value]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(
    kind: str, args: argparse.Namespace, cert: str, key: str, ca: str
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROMETHEUS_", "IMAGE_SYNC_"))}
    process = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve",
            kind,
            "--cert",
            cert,
            "--key",
            key,
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(args.workers),
            "--threads",
            str(args.threads),
            "--floor-json",
            args.floor_json,
        ],
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            connection = connect(port, ca)
            connection.request("GET", "/healthz")
            connection.getresponse().read()
            connection.close()
            return process, port
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{kind} server did not start")


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a gunicorn arbiter and its workers, from /proc (Linux).

    On a shared machine throughput moves with the neighbours' load; CPU time per request
    barely does, so it is the steadier comparison with the floor.
    """
    ticks = os.sysconf("SC_CLK_TCK")

    def stat(path: str) -> list[str] | None:
        try:
            text = Path(path).read_text()
        except OSError:
            return None
        return text[text.rindex(")") + 2 :].split()

    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = stat(f"/proc/{entry}/stat")
        if fields is None:
            continue
        if int(entry) == pid or int(fields[1]) == pid:  # fields[1] is the parent pid
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def stop_server(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def latency_buckets(port: int, ca: str) -> dict[float, float]:
    """The webhook's own latency histogram (cumulative buckets) from /metrics; {} for the floor."""
    connection = connect(port, ca)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        text = response.read().decode()
    finally:
        connection.close()
    if response.status != 200:
        return {}
    out: dict[float, float] = {}
    prefix = 'image_sync_webhook_request_duration_seconds_bucket{le="'
    for line in text.splitlines():
        if line.startswith(prefix):
            bound, _, value = line[len(prefix) :].partition('"} ')
            out[float(bound)] = float(value)
    return out


def app_p99(before: dict[float, float], after: dict[float, float]) -> float:
    """Upper bound (ms) of the histogram bucket holding the 99th percentile of the phase.

    This is the time inside the handler (parse, decide, record, answer), without TLS,
    HTTP and queueing: it separates the webhook's own work from the machine's noise.
    """
    if not after:
        return float("nan")
    counts = sorted((bound, after[bound] - before.get(bound, 0.0)) for bound in after)
    total = counts[-1][1]
    for bound, cumulative in counts:
        if total and cumulative >= 0.99 * total:
            return bound * 1000
    return float("nan")


def bucket_label(bound_ms: float) -> str:
    return "-" if bound_ms != bound_ms else f"<= {bound_ms:g}"  # NaN: the floor has no histogram


def measure(
    kind: str, args: argparse.Namespace, cert: str, key: str, ca: str
) -> dict[str, dict[str, Any]]:
    """One server: warm-up, the fixed-rate phase, the saturation phase."""
    process, port = start_server(kind, args, cert, key, ca)
    try:
        run_load(port, ca, processes=1, threads=2, rate=0, duration=2)
        phases: dict[str, dict[str, Any]] = {}
        for phase, connections, rate in (
            ("fixed", args.fixed_connections, args.rate),
            ("max", args.connections, 0.0),
        ):
            buckets = latency_buckets(port, ca)
            cpu = tree_cpu_seconds(process.pid)
            result = run_load(
                port,
                ca,
                processes=args.processes,
                threads=connections,
                rate=rate,
                duration=args.duration,
            )
            result["app_p99"] = app_p99(buckets, latency_buckets(port, ca))
            result["cpu_us"] = (
                (tree_cpu_seconds(process.pid) - cpu) / max(result["requests"], 1) * 1e6
            )
            phases[phase] = result
        return phases
    finally:
        stop_server(process)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--serve", choices=["floor", "webhook"], help=argparse.SUPPRESS)
    parser.add_argument("--cert", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--bind", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker (default 4)")
    parser.add_argument(
        "--duration", type=float, default=15.0, help="seconds per phase (default 15)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="alternating rounds per server; the best of each is reported (default 3)",
    )
    parser.add_argument(
        "--rate", type=float, default=500.0, help="fixed-rate phase, requests/s (default 500)"
    )
    parser.add_argument(
        "--processes", type=int, default=2, help="load generator processes (default 2)"
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=8,
        help="keep-alive connections per generator process, saturation (default 8)",
    )
    parser.add_argument(
        "--floor-json",
        choices=["json", "orjson"],
        default="json",
        help="the floor's JSON codec (default json, the standard library's)",
    )
    parser.add_argument(
        "--fixed-connections",
        type=int,
        default=4,
        help="keep-alive connections per generator process, fixed rate (default 4)",
    )
    args = parser.parse_args()
    if args.serve:
        return serve(args)

    print(
        f"# {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start; Python {sys.version.split()[0]}"
    )
    print(
        f"# gunicorn gthread: {args.workers} workers x {args.threads} threads, TLS, keep-alive; "
        f"load: {args.processes} processes x {args.connections} connections, {args.duration:g} s per phase; "
        f"floor parses with {args.floor_json}"
    )
    rounds: dict[str, list[dict[str, dict[str, Any]]]] = {"floor": [], "webhook": []}
    with tempfile.TemporaryDirectory(prefix="image-sync-bench-") as tmp:
        ca, cert, key = make_certs(Path(tmp))
        # Alternate the two servers, so load from neighbours on a shared machine hits both.
        for _ in range(args.rounds):
            for kind in ("floor", "webhook"):
                rounds[kind].append(measure(kind, args, cert, key, ca))

    header = (
        f"{'server':<9} {'phase':<14} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} "
        f"{'errors':>7} {'server CPU us/req':>18} {'in-app p99 ms':>14}"
    )
    print(header)
    print("-" * len(header))
    best: dict[str, dict[str, dict[str, Any]]] = {}
    for kind, runs in rounds.items():
        # Best of the rounds: the least disturbed run of each phase.
        best[kind] = {
            "fixed": min((run["fixed"] for run in runs), key=lambda r: r["p99"]),
            "max": max((run["max"] for run in runs), key=lambda r: r["rps"]),
        }
        for index, run in enumerate(runs, 1):
            for phase, r in run.items():
                label = f"{args.rate:g}/s fixed" if phase == "fixed" else "saturation"
                mark = " *" if r is best[kind][phase] else ""
                print(
                    f"{kind:<9} {label:<14} {r['rps']:8.0f} {r['p50']:8.2f} {r['p99']:8.2f} "
                    f"{r['p999']:9.2f} {r['errors']:7d} {r['cpu_us']:18.0f} {bucket_label(r['app_p99']):>14}  round {index}{mark}"
                )
    ratio = best["webhook"]["max"]["rps"] / best["floor"]["max"]["rps"]
    cpu_ratio = best["floor"]["max"]["cpu_us"] / best["webhook"]["max"]["cpu_us"]
    p99 = best["webhook"]["fixed"]["p99"]
    errors = sum(r["errors"] for runs in rounds.values() for run in runs for r in run.values())
    print(
        f"best of {args.rounds} (*): webhook throughput = {ratio:.0%} of the floor (target >= 80%), "
        f"{cpu_ratio:.0%} by server CPU per request; p99 at {args.rate:g}/s = {p99:.2f} ms "
        f"(target < 5 ms); {errors} errors in all"
    )

    # Rounds of one server differ by 10-20 % on a shared 2-core machine, so the best round
    # alone can flatter either side; the mean over all rounds is the steadier figure.
    def mean(kind: str, field: str) -> float:
        return statistics.fmean(run["max"][field] for run in rounds[kind])

    print(
        f"mean of {args.rounds}: webhook throughput = "
        f"{mean('webhook', 'rps') / mean('floor', 'rps'):.0%} of the floor, "
        f"{mean('floor', 'cpu_us') / mean('webhook', 'cpu_us'):.0%} by server CPU per request"
    )
    print(f"# load average {os.getloadavg()[0]:.2f} at end")
    return 0


if __name__ == "__main__":
    sys.exit(main())

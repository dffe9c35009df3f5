"""How fast the prefetch report answers, and how heavy its page is, at 1,000 nodes x 200 images.

The report is built from a Plan, so a synthetic Plan of the target size measures it without a
cluster: `synthetic_plan()` makes one with the failures a large fleet shows (one image missing
from its registry on every node, a private image refused on a pool, scattered deadlines), GPU
nodes and GPU-only images, pulls in flight and images left out by the disk budget. The browser
test renders the same plan.

    python -m bench.report_scale [--nodes 1000] [--images 200] [--repeat 5]

serves it with the prefetcher's own report server and prints, next to its target, how long
`/report` takes to answer over HTTP (built once per plan, then served from the cache), and the
time and bytes of the page, unfiltered, filtered and paged.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from prefetcher.model import (
    BudgetExclusion,
    CellState,
    ImageSummary,
    NodeSummary,
    Plan,
    Summary,
)
from prefetcher.report_cache import ReportCache
from prefetcher.server import ReportServer, create_app

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
MISSING_IMAGE_REASON = "ErrImagePull"
PAGE_TARGET = "≤ 1 s, ≤ 400 kB"


def node_name(index: int) -> str:
    """Node names like a cloud node pool's: `pool-a-0001`, GPU nodes in pool `gpu`."""
    return f"gpu-{index:04d}" if index % 10 == 0 else f"cpu-{index:04d}"


def image_ref(index: int) -> str:
    team = ("ml", "web", "data", "platform")[index % 4]
    return f"harbor.example.internal/{team}/service-{index:03d}:1.{index % 7}"


def synthetic_plan(nodes: int = 1000, images: int = 200, *, seed: int = 7) -> Plan:
    """A converging fleet: most pairs present, some pulling or waiting, grouped failures."""
    rng = random.Random(seed)
    names = [node_name(i) for i in range(nodes)]
    refs = [image_ref(i) for i in range(images)]
    missing_image = refs[3] if images > 3 else refs[0]
    private_image = refs[5] if images > 5 else refs[0]
    gpu_only = {ref for i, ref in enumerate(refs) if i % 25 == 1}
    retry_at = NOW + timedelta(minutes=4)
    cells: list[CellState] = []
    for n, node in enumerate(names):
        gpu = node.startswith("gpu-")
        cordoned = n % 97 == 13
        for ref in refs:
            if cordoned:
                cells.append(CellState(node, ref, "ineligible", "node is cordoned"))
            elif ref in gpu_only and not gpu:
                cells.append(
                    CellState(
                        node,
                        ref,
                        "ineligible",
                        "no GPU: pods using this image request nvidia.com/gpu",
                    )
                )
            elif ref == missing_image:
                cells.append(
                    CellState(
                        node,
                        ref,
                        "failed",
                        MISSING_IMAGE_REASON,
                        f'rpc error: code = NotFound desc = failed to pull and unpack image "{ref}": not found',
                        True,
                        retry_at,
                        "not-found",
                        3,
                    )
                )
            elif ref == private_image and n % 3 == 0:
                cells.append(
                    CellState(
                        node,
                        ref,
                        "failed",
                        "ErrImagePull",
                        f'failed to authorize: failed to fetch anonymous token for "{ref}": 401 Unauthorized',
                        True,
                        retry_at,
                        "unauthorized",
                        2,
                    )
                )
            else:
                roll = rng.random()
                if roll < 0.0001:
                    cells.append(
                        CellState(
                            node,
                            ref,
                            "failed",
                            "DeadlineExceeded",
                            "Pod was active on the node longer than the specified deadline",
                            True,
                            retry_at,
                            "deadline",
                            1,
                        )
                    )
                elif roll < 0.03:
                    cells.append(CellState(node, ref, "pulling", wanted=True))
                elif roll < 0.08:
                    cells.append(
                        CellState(
                            node, ref, "missing", message="waiting for a pull slot", wanted=True
                        )
                    )
                else:
                    cells.append(CellState(node, ref, "present", wanted=True))
    return _plan_from_cells(names, refs, cells, rng)


def _plan_from_cells(
    names: list[str], refs: list[str], cells: list[CellState], rng: random.Random
) -> Plan:
    def counts(key: Callable[[CellState], str]) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for cell in cells:
            per = out.setdefault(key(cell), {})
            per[cell.state] = per.get(cell.state, 0) + 1
        return out

    by_node, by_image = counts(lambda c: c.node), counts(lambda c: c.image)
    states = {
        s: sum(1 for c in cells if c.state == s)
        for s in ("present", "pulling", "missing", "failed", "ineligible")
    }
    wanted = len(cells) - states["ineligible"]

    def node_summary(name: str) -> NodeSummary:
        c = by_node.get(name, {})
        ineligible = c.get("ineligible", 0) == len(refs)
        return NodeSummary(
            name=name,
            eligible=not ineligible,
            why="node is cordoned" if ineligible else "",
            urgent=False,
            budget=1_000_000_000_000,
            budget_used=rng.randrange(10, 400) * 1_000_000_000,
            wanted=len(refs) - c.get("ineligible", 0),
            present=c.get("present", 0),
            pulling=c.get("pulling", 0),
            failed=c.get("failed", 0),
        )

    def image_summary(i: int, ref: str) -> ImageSummary:
        c = by_image.get(ref, {})
        failing = c.get("failed", 0) > len(names) // 10
        return ImageSummary(
            name=f"service-{i:03d}",
            image=ref,
            source="Declared" if i % 9 == 0 else "Learned",
            score=round(100.0 / (1 + i), 2),
            wanted=True,
            nodes_wanted=len(names) - c.get("ineligible", 0),
            nodes_present=c.get("present", 0),
            nodes_pulling=c.get("pulling", 0),
            nodes_failed=c.get("failed", 0),
            last_error="ErrImagePull: not found" if failing else "",
        )

    budget = tuple(
        BudgetExclusion(
            node=name,
            image=refs[-1],
            size=20_400_000_000,
            score=0.5,
            why="disk budget: needs 20.4 GB, 12.1 GB left of 800 GB",
        )
        for name in names[:: max(1, len(names) // 12)]
    )
    return Plan(
        now=NOW,
        cells=tuple(cells),
        budget_left_out=budget,
        images=tuple(image_summary(i, ref) for i, ref in enumerate(refs)),
        nodes=tuple(node_summary(name) for name in names),
        summary=Summary(
            nodes=len(names),
            images=len(refs),
            wanted_pairs=wanted,
            present_pairs=states["present"],
            pulling_pairs=states["pulling"],
            failed_pairs=states["failed"],
            missing_pairs=states["missing"],
            ineligible_pairs=states["ineligible"],
            coverage=states["present"] / wanted if wanted else 1.0,
            pulls_started=0,
            keepers_created=0,
            pods_deleted=0,
            taints_removed=0,
            status_updates=0,
            budget_left_out=len(budget),
            quiet_hours=False,
        ),
    )


@contextmanager
def serve_plan(plan: Plan) -> Iterator[str]:
    """The prefetcher's own report server (HTTP app, cache, page) over `plan`; yields its URL."""
    reports = ReportCache()
    app = create_app(
        report_json=lambda query: reports.json(plan, None, query, {}),
        report_html=lambda query: reports.html(plan, None, query),
        healthy=lambda: (True, "ok"),
        registry=CollectorRegistry(),
    )
    server = ReportServer(app, "127.0.0.1", 0)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def _get(url: str) -> tuple[float, int]:
    """Seconds until the whole answer is read, and its bytes."""
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as answer:
        size = len(answer.read())
    return time.perf_counter() - start, size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report_scale", description=__doc__)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)

    plan = synthetic_plan(args.nodes, args.images)
    print(
        f"report of {args.nodes} nodes x {args.images} images ({len(plan.cells):,} pairs), "
        f"over HTTP, median of {args.repeat}"
    )
    one = node_name(1)
    rows: list[tuple[str, float, int, str]] = []
    with serve_plan(plan) as url:
        seconds, size = _get(f"{url}/report")
        rows.append(("/report, first request for a plan", seconds, size, "≤ 1 s"))
        seconds, size = _get(f"{url}/report?pairs=all")
        rows.append(("/report?pairs=all, first request", seconds, size, "≤ 1 s"))
        for label, path, target in (
            ("/report, the same plan again", "/report", "≤ 1 s"),
            ("/report?page=10", "/report?page=10", "≤ 1 s"),
            ("/report?pairs=none", "/report?pairs=none", "≤ 1 s"),
            ("/report?pairs=all, again", "/report?pairs=all", "≤ 1 s"),
            ("/report?node=ONE", f"/report?node={one}", "≤ 1 s"),
            ("/report?state=failed", "/report?state=failed", "≤ 1 s"),
            ("/ (the page)", "/", PAGE_TARGET),
            ("/?node=ONE", f"/?node={one}", PAGE_TARGET),
            ("/?state=failed", "/?state=failed", PAGE_TARGET),
            ("/?page=10", "/?page=10", PAGE_TARGET),
        ):
            runs = [_get(url + path) for _ in range(args.repeat)]
            rows.append((label, statistics.median(r[0] for r in runs), runs[-1][1], target))
    width = max(len(r[0]) for r in rows)
    for label, seconds, size, target in rows:
        print(f"  {label:<{width}}  {seconds:6.3f} s  {size / 1e3:9,.0f} kB   target {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

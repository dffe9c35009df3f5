"""A week of a 50-node GPU cluster, generated deterministically from a seed.

    .venv/bin/python bench/week.py --out DIR     # writes DIR/week.yaml and DIR/week.jsonl
    .venv/bin/python bench/week.py --out DIR --seed 2   # another week's pods, same cluster

- 30 CPU nodes and 20 GPU nodes (8 A100 each); at midnight 12 CPU and 8 GPU nodes leave, at
  07:00 as many new ones join (diurnal scaling with node churn);
- Harbor: 10 services, each rolled out daily at its own hour with a new image tag; batch
  images for CPU jobs (half rebuilt nightly); four teams' training images rebuilt daily
  (each day's tags pushed at 23:00 the night before, so a catalog lists them from then);
  nvcr.io: NGC images (pytorch, tritonserver, tensorflow, nemo, cuda) in several versions;
- CPU batch jobs and GPU training / evaluation / notebooks arriving at a diurnal rate, a
  Triton service scaled with the day, five nightly CronJobs at 02:00 (20 pods each);
- nvcr.io unreachable for 2 hours (day 4, 10:00 to 12:00);
- the scheduler bin-packs (NodeResourcesFit `MostAllocated`, GPUs weighing 3), as GPU
  clusters configure it.

Two disk variants: `roomy` (GPU disks hold every GPU image) and `tight` (the GPU nodes' disk
budget holds about a third of the GPU images). About 20,000 pods.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import yaml

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulator.scenario import Scenario, parse_scenario
from simulator.scoring import GPU_BIN_PACKING
from simulator.virtual.pods import PodSpec
from simulator.virtual.trace import trace_lines

HOUR = 3600.0
DAY = 24 * HOUR
DAYS = 7
SEED = 20261207
HARBOR = "harbor.example.internal"
CPU_NODES, GPU_NODES = 30, 20
CPU_CHURN, GPU_CHURN = 12, 8
SERVICES = [
    f"svc-{name}"
    for name in ("auth", "cart", "search", "feed", "pay", "media", "chat", "geo", "mail", "ads")
]
BATCH = ["etl", "report", "data-prep", "indexer", "scorer", "exporter"]
NIGHTLY_BATCH = ("etl", "indexer", "scorer")
TEAMS = 4
CRONJOBS = [
    ("backup", f"{HARBOR}/ops/backup:1.4", False),
    ("nightly-report", f"{HARBOR}/batch/report:1.0", False),
    ("etl-nightly", f"{HARBOR}/batch/etl:1.0", False),
    ("data-sync", f"{HARBOR}/ops/data-sync:2.0", False),
    ("model-eval", "nvcr.io/nvidia/pytorch:24.08-py3", True),
]
# NGC images: (reference, compressed GB, disk GB, share of GPU jobs)
NGC = [
    ("nvcr.io/nvidia/pytorch:24.08-py3", 9.5, 20.4, 0.30),
    ("nvcr.io/nvidia/pytorch:24.07-py3", 9.3, 20.0, 0.12),
    ("nvcr.io/nvidia/pytorch:24.06-py3", 9.2, 19.8, 0.06),
    ("nvcr.io/nvidia/tensorflow:24.08-tf2-py3", 7.6, 16.9, 0.08),
    ("nvcr.io/nvidia/nemo:24.07", 15.0, 32.0, 0.06),
    ("nvcr.io/nvidia/cuda:12.4.1-base-ubuntu22.04", 0.086, 0.239, 0.10),
    ("nvcr.io/nvidia/cuda:12.4.1-runtime-ubuntu22.04", 1.4, 3.6, 0.08),
    ("nvcr.io/nvidia/tritonserver:24.08-py3", 7.9, 17.4, 0.0),
    ("nvcr.io/nvidia/tritonserver:24.07-py3", 7.8, 17.2, 0.0),
]
TRAINER_SHARE = 0.35  # GPU jobs on a team's own image, rebuilt daily
GPU_SELECTOR = {"nvidia.com/gpu.present": "true"}
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def diurnal(t: float) -> float:
    """Load factor through the day: 0.25 at night, 1.0 mid-afternoon."""
    hour = (t % DAY) / HOUR
    return (
        0.25 + 0.75 * max(0.0, math.sin(math.pi * (hour - 7.0) / 14.0)) if 7 <= hour <= 21 else 0.25
    )


def service_image(service: str, day: int) -> str:
    return f"{HARBOR}/apps/{service}:1.{day}.0"


def _service_version(service: str, day: int, hour: int) -> str:
    return service_image(service, day)


def trainer_image(team: int, day: int) -> str:
    return f"{HARBOR}/ml/team-{team}-trainer:3.{day}"


def batch_image(name: str, day: int) -> str:
    # Half the batch images are rebuilt every night; the others are stable.
    version = f"1.{day}" if name in NIGHTLY_BATCH else "1.0"
    return f"{HARBOR}/batch/{name}:{version}"


def registries() -> list[dict[str, Any]]:
    rng = random.Random(SEED)
    harbor = []
    for service in SERVICES:
        size = rng.uniform(0.15, 1.2)
        for day in range(DAYS + 1):
            harbor.append(_image(service_image(service, day), size, size * 2.6, day))
    for team in range(TEAMS):
        size = rng.uniform(3.0, 6.0)
        harbor += [
            _image(trainer_image(team, day), size, size * 2.5, day) for day in range(DAYS + 1)
        ]
    for name in BATCH:
        size = rng.uniform(0.3, 1.5)
        harbor += [
            _image(batch_image(name, day), size, size * 2.5, day if name in NIGHTLY_BATCH else 0)
            for day in range(DAYS + 1)
        ]
    harbor += [_image(image, 0.4, 1.0) for _, image, gpu in CRONJOBS if not gpu]
    harbor.append(_image(f"{HARBOR}/ml/notebook:2024.08", 5.1, 13.6))
    unique = {entry["image"]: entry for entry in harbor}
    return [
        {
            "host": HARBOR,
            "bandwidth": "10Gbps",
            "images": sorted(unique.values(), key=lambda e: e["image"]),
        },
        {
            "host": "nvcr.io",
            "bandwidth": "2Gbps",
            "outages": [{"start": 3 * DAY + 10 * HOUR, "duration": 2 * HOUR}],
            "images": [_image(ref, c, d) for ref, c, d, _ in NGC],
        },
        {
            "host": "ghcr.io",
            "bandwidth": "1Gbps",
            "images": [_image("ghcr.io/image-sync/image-sync:0.1.0", 0.024, 0.068)],
        },
    ]


def _image(reference: str, compressed_gb: float, disk_gb: float, day: int = 0) -> dict[str, Any]:
    """A registry entry; a tag of day `day` >= 1 is built and pushed at 23:00 the day before
    (what a registry catalog lists grows through the week), day 0's before the start."""
    entry = {
        "image": reference.partition("/")[2],
        "compressed": f"{compressed_gb * 1000:.0f}MB",
        "disk": f"{disk_gb * 1000:.0f}MB",
    }
    if day:
        entry["pushedAt"] = f"{day * DAY - HOUR:.0f}"
    else:
        entry["age"] = "1d"
    return entry


def gpu_images_disk() -> float:
    """Bytes on disk of the images GPU pods use on one day (NGC, teams, notebook)."""
    total = sum(d for _, _, d, _ in NGC) + 4.5 * 2.5 * TEAMS + 13.6  # one version per team
    return total * 1e9


def scenario_data(variant: str) -> dict[str, Any]:
    """The cluster: pools, registries, node churn. `variant`: `roomy` or `tight`."""
    if variant not in ("roomy", "tight"):
        raise ValueError(f"disk variant must be roomy or tight, not {variant!r}")
    # Image-sync's default budget is half the image filesystem; `tight` makes that half a
    # third of the GPU images.
    gpu_disk = "2Ti" if variant == "roomy" else f"{int(2 * gpu_images_disk() / 3 / 2**30)}Gi"
    events: list[dict[str, Any]] = []
    live = {"cpu": list(range(1, CPU_NODES + 1)), "gpu": list(range(1, GPU_NODES + 1))}
    counter = {"cpu": CPU_NODES, "gpu": GPU_NODES}
    for day in range(1, DAYS):
        for pool, churn in (("cpu", CPU_CHURN), ("gpu", GPU_CHURN)):
            for number in sorted(live[pool])[-churn:]:
                events.append({"at": day * DAY, "action": "remove", "node": f"{pool}-{number}"})
                live[pool].remove(number)
            events.append(
                {"at": day * DAY + 7 * HOUR, "action": "join", "pool": pool, "count": churn}
            )
            live[pool] += list(range(counter[pool] + 1, counter[pool] + churn + 1))
            counter[pool] += churn
    return {
        "name": f"week-{variant}",
        "description": f"50 nodes, 7 days, ~20,000 pods; GPU disks {variant}",
        "registries": registries(),
        "nodes": [
            {
                "pool": "cpu",
                "count": CPU_NODES,
                "cpu": "32",
                "memory": "128Gi",
                "disk": "300Gi",
                "bandwidth": "400Mbps",
                "zones": ["zone-a", "zone-b", "zone-c"],
            },
            {
                "pool": "gpu",
                "count": GPU_NODES,
                "cpu": "96",
                "memory": "1024Gi",
                "gpus": 8,
                "disk": gpu_disk,
                "bandwidth": "230Mbps",
                "zones": ["zone-a", "zone-b"],
                "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
            },
        ],
        "events": events,
        # GPU clusters bin-pack (whole nodes stay free for 8-GPU jobs), as kube-scheduler's
        # NodeResourcesFit does with this strategy.
        "scheduler": {
            "scoringStrategy": {
                "type": GPU_BIN_PACKING.type,
                "resources": [{"name": n, "weight": w} for n, w in GPU_BIN_PACKING.resources],
            }
        },
    }


def week_scenario(variant: str) -> Scenario:
    return parse_scenario(scenario_data(variant), f"week-{variant}")


def _gpu(spec: dict[str, Any], gpus: int) -> dict[str, Any]:
    return {**spec, "gpus": gpus, "node_selector": GPU_SELECTOR, "tolerations": (GPU_TOLERATION,)}


def deployment(
    rng: random.Random,
    namespace: str,
    name: str,
    image: Callable[[int, int], str],
    *,
    rollouts: set[int],
    replicas: Callable[[float], int],
    resources: dict[str, Any],
) -> list[PodSpec]:
    """A Deployment's pods over the week: scaled every hour to `replicas(t)` (the newest
    replicas go first), every replica replaced, 30 s apart, at each rollout hour."""
    live: list[int] = []  # serials of running replicas, oldest first
    starts: dict[int, tuple[float, str]] = {}
    ends: dict[int, float] = {}
    for hour in range(DAYS * 24):
        t = hour * HOUR
        if hour in rollouts:
            for k, old in enumerate(list(live)):
                at = t + 30.0 * k
                ends[old] = at
                serial = len(starts) + 1
                starts[serial] = (at, image(hour // 24, hour))
                live[k] = serial
        want = replicas(t)
        while len(live) < want:
            serial = len(starts) + 1
            starts[serial] = (t + rng.uniform(0, 600), image(hour // 24, hour))
            live.append(serial)
        while len(live) > want:
            ends[live.pop()] = t + rng.uniform(0, 600)
    out = []
    for serial, (at, ref) in starts.items():
        end = ends.get(serial)
        out.append(
            PodSpec(
                at=round(at, 1),
                namespace=namespace,
                name=f"{name}-{serial}",
                images=(ref,),
                owner_kind="ReplicaSet",
                owner=f"{name}-{ref.rsplit(':', 1)[-1]}",
                duration=None if end is None else max(60.0, round(end - at, 1)),
                **resources,
            )
        )
    return out


def week_pods(seed: int = SEED) -> list[PodSpec]:
    """Every pod of the week, in creation order."""
    rng = random.Random(seed)
    pods: list[PodSpec] = []

    def add(
        at: float, namespace: str, name: str, image: str, owner: tuple[str, str], **kw: Any
    ) -> None:
        pods.append(
            PodSpec(
                at=round(at, 1),
                namespace=namespace,
                name=name,
                images=(image,),
                owner_kind=owner[0],
                owner=owner[1],
                **kw,
            )
        )

    for index, service in enumerate(SERVICES):
        rollout = 9 + index % 6
        pods += deployment(
            rng,
            "apps",
            service,
            partial(_service_version, service),
            rollouts={day * 24 + rollout for day in range(1, DAYS)},
            replicas=lambda t: 3 + round(7 * diurnal(t + 1800)),
            resources={"cpu": 1.0, "memory": 2 * 2**30},
        )
    triton_update = 3 * 24 + 9
    pods += deployment(
        rng,
        "serving",
        "triton",
        lambda day, hour: (
            "nvcr.io/nvidia/tritonserver:2" + ("4.07-py3" if hour < triton_update else "4.08-py3")
        ),
        rollouts={triton_update},
        replicas=lambda t: 2 + round(6 * diurnal(t)),
        resources=_gpu({"cpu": 4.0, "memory": 32 * 2**30}, 1),
    )
    # CPU batch jobs: ~1,700 a day at the diurnal rate.
    t = 0.0
    job = 0
    while t < DAYS * DAY:
        t += rng.expovariate(1700 / DAY * diurnal(t) / 0.55)
        job += 1
        name = rng.choice(BATCH)
        day = int(t // DAY)
        add(
            t,
            "batch",
            f"{name}-{job}",
            batch_image(name, day),
            ("Job", f"{name}-{job}"),
            cpu=2.0,
            memory=4 * 2**30,
            duration=rng.uniform(120, 1800),
        )
    # GPU work: ~1,000 pods a day: evaluation, training, notebooks.
    t = 0.0
    job = 0
    weights = [share for *_, share in NGC]
    while t < DAYS * DAY:
        t += rng.expovariate(1000 / DAY * diurnal(t) / 0.55)
        job += 1
        day = int(t // DAY)
        kind = rng.random()
        if rng.random() < TRAINER_SHARE:
            image = trainer_image(rng.randrange(TEAMS), day)
        else:
            image = rng.choices([ref for ref, *_ in NGC], weights=weights)[0]
        if kind < 0.75:
            add(
                t,
                "ml",
                f"eval-{job}",
                image,
                ("Job", f"eval-{job}"),
                duration=rng.uniform(300, 1800),
                **_gpu({"cpu": 8.0, "memory": 64 * 2**30}, rng.choice((1, 1, 2))),
            )
        elif kind < 0.93:
            add(
                t,
                "ml",
                f"train-{job}",
                image,
                ("Job", f"train-{job}"),
                duration=rng.uniform(1800, 4 * HOUR),
                **_gpu({"cpu": 16.0, "memory": 128 * 2**30}, 4),
            )
        else:
            add(
                t,
                "research",
                f"notebook-{job}",
                f"{HARBOR}/ml/notebook:2024.08",
                ("", ""),
                duration=rng.uniform(1800, 3 * HOUR),
                **_gpu({"cpu": 4.0, "memory": 32 * 2**30}, 1),
            )
    # Nightly CronJobs at 02:00: 20 pods each.
    for day in range(DAYS):
        for name, image, gpu in CRONJOBS:
            for index in range(20):
                at = day * DAY + 2 * HOUR + index * 5.0
                extra = (
                    _gpu({"cpu": 8.0, "memory": 64 * 2**30}, 1)
                    if gpu
                    else {"cpu": 1.0, "memory": 2 * 2**30}
                )
                add(
                    at,
                    "cron",
                    f"{name}-{day}-{index}",
                    image,
                    ("Job", f"{name}-{day}"),
                    duration=rng.uniform(300, 900),
                    **extra,
                )
    return sorted((p for p in pods if p.at < DAYS * DAY), key=lambda p: (p.at, p.name))


def static_list() -> list[dict[str, Any]]:
    """What an admin would list for a fixed-list tool: the services' first versions, the batch
    images, and the main NGC images for GPU nodes."""
    entries: list[dict[str, Any]] = [{"image": service_image(s, 0)} for s in SERVICES]
    entries += [{"image": batch_image(n, 0)} for n in BATCH]
    entries += [{"image": ref, "nodeSelector": GPU_SELECTOR} for ref, *_ in NGC[:4]]
    return entries


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--out", required=True, help="directory for week-<variant>.yaml and week.jsonl"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=SEED,
        help=f"draw the pods from this seed (default {SEED}); the cluster stays the same",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for variant in ("roomy", "tight"):
        data = {**scenario_data(variant), "staticList": static_list()}
        (out / f"week-{variant}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    pods = week_pods(args.seed)
    (out / "week.jsonl").write_text("\n".join(trace_lines(pods)) + "\n")
    print(f"{len(pods)} pods; wrote {out}/week-roomy.yaml, week-tight.yaml, week.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())

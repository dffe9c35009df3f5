"""The prefetcher's memory at a size, in a few minutes whatever the machine's load.

    timeout 600 .venv/bin/python bench/memory_scale.py [--size 1000x200] [--restart]
        [--profile-plans] [--heap] [--garbage]

The real `image-sync prefetcher` runs in its own process against the simulator's API
server, as in a cluster, with the environment its Deployment gives it; no simulated
kubelets: the bench writes what kubelets would (bench/memory_cluster.py), step by step, so
every step's state is the same on a busy machine and an idle one. It walks a cluster from
empty to converged the way the scale bench's nodes do, all joining at once, each pulling
its images in pullers of `joinPullBatchSize` (one puller a node at 200 images):

1. the nodes join (Ready, listing no image): the prefetcher creates a puller per node;
2. every puller is half way (its first half of containers running, the rest waiting);
3. every puller has pulled (all its containers running), the nodes list those images: the
   prefetcher records them, starts the next pullers if any, and creates keepers, which do
   not run yet: the finished pullers wait for them (the converging peak's state);
4. every puller has pulled, and from now on a keeper runs as soon as it is created and a
   deleted pod goes at once: the prefetcher deletes the pullers, until the coverage is 1,
   every node has one keeper and no puller is left;
5. every node's status is written again (a heartbeat round, as kubelets do every 10 s);
6. a sweep (SIGHUP);
7. `/report` (a page of pairs, and every pair) and the page;
8. one more node joins;
9. one more image is declared (its pass only: the pullers it starts are not followed).

A node also joins at step 2, while every other node's puller runs. With `--restart` a new
prefetcher process replaces the first after step 3 (its first pass reads every puller, as
after an upgrade or a new leader), and the run ends there.
After each step it also prints the plan figures of the step's passes from the pass log
(bench/pass_times.py: the plan's wall time, the planning thread's own CPU, the other
threads' CPU meanwhile, the snapshot and the report), and the pass of the sweep, of each
joining node and of the new image next to its target (1 s; 50 ms): the plan's own CPU is
the figure a busy machine does not change. `--profile-plans` profiles every plan (cProfile,
about twice the plans' CPU) and prints where those passes' plans went.

After each step, once the prefetcher has been idle (no pass, no CPU) for a few seconds, it
prints the prefetcher's RSS (VmRSS), its peak during the step (VmHWM, reset between
steps), its CPU and what malloc holds (in use, free, mapped apart). With `--heap` the
prefetcher runs under tracemalloc (bench/traced_prefetcher.py, two to five times the CPU)
and the live allocations are printed after step 3, step 5 (converged) and at the end;
`--garbage` prints there the unreachable reference cycles instead, and collects them.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.memory_cluster import (  # noqa: E402
    BenchKubelet,
    Obj,
    Store,
    half_way,
    node_config,
    node_status,
    role,
    running_status,
)
from bench.memory_result import Result, Step, summary  # noqa: E402
from bench.pass_times import (  # noqa: E402
    PASS_TARGET,
    SWEEP_TARGET,
    describe,
    plan_times,
    profile_lines,
)
from bench.prefetcher_process import (  # noqa: E402
    PREFIX,
    PassLine,
    PrefetcherProcess,
    actions,
    metric,
)
from bench.scale_cluster import (  # noqa: E402
    JOIN_PULL_BATCH_SIZE,
    NAMESPACE,
    PULL_BATCH_SIZE,
    REGISTRY,
    declare,
    image_sizes,
    install,
    new_image,
)
from imagesync.names import (  # noqa: E402
    COMPONENT_KEEPER,
    COMPONENT_PULLER,
    POD_NAMESPACE_DEFAULT,
)
from prefetcher.memory import ALLOCATOR_ENV  # noqa: E402
from simulator.apiserver.server import ApiServer  # noqa: E402
from simulator.testing import kube_client  # noqa: E402

# The prefetcher has done what a step asked once it has made no pass and used no more than
# IDLE_CPU seconds of CPU every half second for QUIET wall seconds (a pass logs at its end).
QUIET = 3.0
IDLE_CPU = 0.05
STEP_TIMEOUT = 240.0


def say(text: str) -> None:
    print(text, flush=True)


def reset_peak(pid: int) -> bool:
    """Start VmHWM again from the current RSS (Linux: `5` into clear_refs)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class Bench:
    """The simulator's API server, the prefetcher against it, and the steps between them."""

    def __init__(
        self,
        nodes: int,
        image_count: int,
        heap: bool,
        workdir: Path,
        env: dict[str, str],
        garbage: bool = False,
        restarted: bool = False,
        profile_plans: bool = False,
    ) -> None:
        self.nodes = nodes
        self.images = [(ref, disk) for ref, _, disk in image_sizes(image_count)]
        self.result = Result(nodes, image_count, os.getloadavg())
        self.traced = heap
        self.garbage = garbage
        self.restarted = restarted  # a new prefetcher process once the pullers have pulled
        self.profiles = workdir / "plans" if profile_plans else None  # a cProfile per plan
        self.dumps = workdir / "heap.txt"
        self.server = ApiServer()
        self.server.start()
        self.kubeconfig = self.server.write_kubeconfig(workdir / "kubeconfig")
        self.store = Store(self.server)
        self.configs = [node_config(i) for i in range(nodes)]
        self.workdir = workdir
        self.kubelet = BenchKubelet(self.store)
        self.started = time.monotonic()
        self.prefetcher: PrefetcherProcess | None = None
        self.env = env
        self.logged = 0  # passes in the prefetcher's log before the current step

    # --- the cluster ---------------------------------------------------------------------

    def create(self) -> None:
        install(kube_client(self.server), [(ref, 0, 0) for ref, _ in self.images])
        now = time.time()
        for config in self.configs:
            self.store.create_node(config, node_status(config, [], now))

    def pods(self, component: str) -> list[Obj]:
        return [p for p in self.store.pods_in(POD_NAMESPACE_DEFAULT) if role(p) == component]

    def counts(self) -> dict[str, int]:
        pods = self.store.pods_in(POD_NAMESPACE_DEFAULT)
        return {
            "pullers": sum(role(p) == COMPONENT_PULLER for p in pods),
            "keepers": sum(role(p) == COMPONENT_KEEPER for p in pods),
        }

    def pullers_status(self, status: Callable[[Obj, float], Obj]) -> None:
        now = time.time()
        for pod in self.pods(COMPONENT_PULLER):
            if not pod["metadata"].get("deletionTimestamp"):
                self.store.set_pod_status(pod, status(pod, now))

    def heartbeat(self) -> None:
        """Every node's status written again, listing the images its pods hold or pulled."""
        held: dict[str, set[str]] = {c.name: set() for c in self.configs}
        for pod in self.store.pods_in(POD_NAMESPACE_DEFAULT):
            running = {
                s["image"]
                for s in (pod.get("status") or {}).get("containerStatuses", [])
                if "running" in s["state"]
            }
            held.setdefault(pod["spec"].get("nodeName", ""), set()).update(running)
        sizes = dict(self.images)
        now = time.time()
        for config in self.configs:
            listed = [(ref, sizes.get(ref, 0)) for ref in sorted(held[config.name])]
            self.store.set_node_status(config.name, node_status(config, listed, now))

    # --- the prefetcher ------------------------------------------------------------------

    def start_prefetcher(self) -> PrefetcherProcess:
        env = {
            "IMAGE_SYNC_NAMESPACE": NAMESPACE,
            "IMAGE_SYNC_REGISTRIES": REGISTRY,
            # Caps no node waits for (nodes join after the start).
            "IMAGE_SYNC_MAX_CONCURRENT_PULLS": str(2 * self.nodes),
            "IMAGE_SYNC_MAX_PULLS_PER_REGISTRY": str(2 * self.nodes),
            "IMAGE_SYNC_MAX_PULLS_PER_IMAGE": str(2 * self.nodes),
            "IMAGE_SYNC_PULL_BATCH_SIZE": str(PULL_BATCH_SIZE),
            "IMAGE_SYNC_SWEEP_INTERVAL": "1800s",
            "IMAGE_SYNC_LOG_LEVEL": "info",
            "IMAGE_SYNC_LOG_FORMAT": "text",
            **ALLOCATOR_ENV,  # as its Deployment runs it
            **self.env,
        }
        # The real command, in a wrapper that reports malloc's figures on a signal (and
        # traces every allocation with --heap).
        command = [
            sys.executable,
            str(ROOT / "bench" / "traced_prefetcher.py"),
            *([] if self.traced else ["--no-trace"]),
            *(["--garbage"] if self.garbage else []),
            *(["--profile-plans", str(self.profiles)] if self.profiles else []),
            str(self.dumps),
        ]
        self.prefetcher = PrefetcherProcess(
            [*command, "prefetcher", "--kubeconfig", str(self.kubeconfig)],
            env,
            self.workdir,
            port=19000 + os.getpid() % 1000,
        )
        return self.prefetcher

    def join(self) -> None:
        """One more node joins, Ready and listing no image (as the scale bench's do)."""
        config = node_config(self.nodes)
        self.configs.append(config)
        self.nodes += 1
        self.store.create_node(config, node_status(config, [], time.time()))

    def step_passes(self) -> list[PassLine]:
        """The passes logged since the step began."""
        assert self.prefetcher is not None
        return self.prefetcher.passes()[self.logged :]

    def first_pass(
        self, name: str, trigger: str, target: float, wait: float = STEP_TIMEOUT
    ) -> PassLine | None:
        """Wait for the step's first pass whose trigger names `trigger`; print and keep its
        plan figures next to `target`."""
        assert self.prefetcher is not None
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            self.prefetcher.check()
            found = next((p for p in self.step_passes() if trigger in p.trigger), None)
            if found is not None:
                times = plan_times([found])
                self.result.plans[name] = times
                self.result.targets[name] = target
                say(f"  {name}: {describe(times, target)}")
                if self.profiles is not None:
                    number = self.prefetcher.passes().index(found) + 1
                    say("\n".join(profile_lines(self.profiles / f"plan-{number:04d}.prof")))
                return found
            time.sleep(0.2)
        say(f"  {name}: no pass for {trigger!r} within {wait:.0f}s")
        return None

    def restart(self) -> PrefetcherProcess:
        """A new prefetcher process in place of the running one (an upgrade, a new leader)."""
        assert self.prefetcher is not None
        self.prefetcher.stop()
        self.logged = 0  # the new process starts a new log
        return self.start_prefetcher()

    def settle(self, name: str, condition: Callable[[], bool] = lambda: True) -> None:
        """Wait for `condition`, then for QUIET seconds without a pass; record the step
        and the plan figures of its passes."""
        prefetcher = self.prefetcher
        assert prefetcher is not None
        deadline = time.monotonic() + STEP_TIMEOUT
        seen, quiet_since, cpu = -1, time.monotonic(), prefetcher.cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            prefetcher.check()
            count, used = len(prefetcher.passes()), prefetcher.cpu_seconds()
            if count != seen or used - cpu > IDLE_CPU:
                seen, quiet_since = count, time.monotonic()
            elif time.monotonic() - quiet_since >= QUIET and seen and condition():
                break
            cpu = used
        else:
            say(f"  {name}: not settled within {STEP_TIMEOUT:.0f}s")
        samples = prefetcher.metrics()
        malloc = self.dump(full=False).splitlines()[0]
        plans = plan_times(self.step_passes())
        step = Step(
            name=name,
            wall=time.monotonic() - self.started,
            rss_mib=prefetcher.memory_kib("VmRSS") / 1024,
            peak_mib=prefetcher.memory_kib("VmHWM") / 1024,
            cpu=prefetcher.cpu_seconds(),
            pods=self.counts(),
            coverage=metric(samples, f"{PREFIX}_coverage_ratio"),
            passes=seen,
            malloc=malloc,
            plans=plans,
        )
        self.logged = seen
        self.result.steps.append(step)
        self.result.peak_resets = reset_peak(prefetcher.pid) and self.result.peak_resets
        say(
            f"  {name:<28} RSS {step.rss_mib:6.0f} MiB, peak {step.peak_mib:6.0f} MiB, CPU "
            f"{step.cpu:5.1f}s, coverage {step.coverage:.3f}, {step.pods}, {step.passes} passes, "
            f"{step.wall:.0f}s\n    {malloc}\n    {describe(plans)}"
        )

    def dump(self, full: bool) -> str:
        """The prefetcher's malloc figures (`full`: and its objects by type, and with --heap
        its traced allocations)."""
        assert self.prefetcher is not None
        self.dumps.unlink(missing_ok=True)
        self.prefetcher.process.send_signal(signal.SIGUSR2 if full else signal.SIGUSR1)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not self.dumps.exists():
            time.sleep(0.2)
        return self.dumps.read_text() if self.dumps.exists() else "no answer"

    def dump_heap(self, name: str) -> None:
        if not (self.traced or self.garbage):
            return
        text = self.dump(full=True)
        self.result.heap[name] = text
        say(f"  heap after {name}:\n{text}")

    # --- the steps -----------------------------------------------------------------------

    def coverage(self) -> float:
        assert self.prefetcher is not None
        return metric(self.prefetcher.metrics(), f"{PREFIX}_coverage_ratio")

    def steps(self) -> None:
        """From empty to converged, then a sweep, a node joining and a new image."""
        first_wave = min(JOIN_PULL_BATCH_SIZE, len(self.images))
        self.settle("1 pullers created", lambda: self.counts()["pullers"] >= self.nodes)
        self.pullers_status(half_way)
        self.settle("2 pullers half way")
        self.join()  # while every other node's puller runs
        self.first_pass("2j a node joins, pullers running", "node", PASS_TARGET)
        self.settle("2j a node joined", lambda: self.counts()["pullers"] >= self.nodes)
        self.pullers_status(running_status)
        self.heartbeat()
        more = len(self.images) > first_wave
        self.settle(
            "3 pulled, waiting for keepers",
            lambda: not more or self.counts()["pullers"] >= 2 * self.nodes,
        )
        self.dump_heap("3 pulled, waiting for keepers")
        if self.restarted:  # the restart's figures, and the run ends there (10 minutes)
            self.restart()
            self.first_pass("3r restarted: its first pass", "", SWEEP_TARGET)
            self.settle("3r restarted, pullers waiting")
            return
        self.kubelet.running = True
        self.pullers_status(running_status)

        def converged() -> bool:
            counts = self.counts()
            done = self.coverage() >= 1.0
            return done and counts["pullers"] == 0 and counts["keepers"] == self.nodes

        self.settle("4 converged", converged)
        self.heartbeat()
        self.settle("5 node status round")
        self.dump_heap("5 node status round")
        prefetcher = self.prefetcher
        assert prefetcher is not None
        prefetcher.request_sweep()
        self.first_pass("6 the converged sweep", "sweep", SWEEP_TARGET)
        self.settle("6 sweep", lambda: any(p.trigger == "sweep" for p in self.step_passes()))
        result = self.result
        result.report_seconds, result.report_bytes = prefetcher.timed_get("/report")
        result.report_all_seconds, result.report_all_bytes = prefetcher.timed_get(
            "/report?pairs=all"
        )
        result.page_seconds, result.page_bytes = prefetcher.timed_get("/")
        self.settle("7 /report and the page")
        self.dump_heap("7 /report and the page")
        self.join()
        self.first_pass("8 a node joins, converged", "node", PASS_TARGET)
        self.settle("8 a node joined", lambda: self.coverage() >= 1.0)
        declare(kube_client(self.server), new_image()[0])
        # Its pass's plan; the thousand pullers it starts are not followed.
        self.first_pass("9 a new image, converged", "new image", PASS_TARGET)
        result.actions = actions(prefetcher.metrics())

    def run(self) -> Result:
        t0 = time.monotonic()
        self.create()
        say(
            f"  {self.nodes} nodes, {len(self.images)} images written in {time.monotonic() - t0:.1f}s"
        )
        self.kubelet.start()
        self.start_prefetcher()
        try:
            self.steps()
        finally:
            if self.prefetcher is not None:
                self.prefetcher.stop()
            self.kubelet.stop()
            self.server.stop()
        self.result.wall = time.monotonic() - self.started
        self.result.load_after = os.getloadavg()
        return self.result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", default="1000x200", help="NODESxIMAGES")
    parser.add_argument("--heap", action="store_true", help="trace the prefetcher (tracemalloc)")
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument(
        "--garbage",
        action="store_true",
        help="after steps 3, 5 and 7: the unreachable cycles by type, then collect them "
        "(the later steps' figures then start from a collected heap)",
    )
    parser.add_argument(
        "--restart",
        action="store_true",
        help="once every puller has pulled, a new prefetcher process in place of the first "
        "(its first pass reads every puller), and the run ends there",
    )
    parser.add_argument(
        "--profile-plans",
        action="store_true",
        help="profile every plan (cProfile: about twice the plans' CPU) and print where the "
        "sweep's, the joining nodes' and the new image's plans spent it",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="more environment for the prefetcher (to compare settings), repeatable",
    )
    args = parser.parse_args()
    nodes, images = (int(part) for part in args.size.split("x"))
    say(
        f"== memory at {nodes} nodes x {images} images{' (traced)' if args.heap else ''}"
        f"{''.join(f', {item}' for item in args.env)}"
    )
    with tempfile.TemporaryDirectory(prefix="memory-scale-") as workdir:
        env = dict(item.split("=", 1) for item in args.env)
        bench = Bench(
            nodes,
            images,
            args.heap,
            Path(workdir),
            env,
            args.garbage,
            args.restart,
            args.profile_plans,
        )
        result = bench.run()
    say(summary(result))
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

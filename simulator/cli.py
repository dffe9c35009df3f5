"""Command line of `image-sync sim`: arguments only; the work is imported when it runs.

image-sync sim [--scenario FILE|NAME] [--bind HOST:PORT] [--kubeconfig-out FILE] [--speed X]
               [--serve-registries]
image-sync sim --attach KUBECONFIG [--scenario ...] [--no-scheduler]
image-sync sim node add|remove|cordon|uncordon|notready|ready ... --kubeconfig FILE
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

from imagesync.config import Config

log = logging.getLogger(__name__)

NODE_ACTIONS = ("add", "remove", "cordon", "uncordon", "notready", "ready")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario",
        metavar="FILE|NAME",
        help="scenario file or shipped name: gpu-cluster (default), lab, scale-500",
    )
    parser.add_argument(
        "--bind",
        metavar="HOST:PORT",
        default="127.0.0.1:6443",
        help="API server address (default %(default)s)",
    )
    parser.add_argument(
        "--kubeconfig-out",
        metavar="FILE",
        default="image-sync-sim.kubeconfig",
        help="where to write the kubeconfig (default %(default)s)",
    )
    parser.add_argument(
        "--speed",
        type=float,
        metavar="X",
        help="simulated seconds per wall second (default: the scenario's)",
    )
    parser.add_argument(
        "--attach",
        metavar="KUBECONFIG",
        help="run only the kubelets (and scheduler) against the API server of this kubeconfig",
    )
    parser.add_argument(
        "--no-scheduler", action="store_true", help="do not run the simulated scheduler"
    )
    parser.add_argument(
        "--no-workload", action="store_true", help="do not replay the scenario's workload"
    )
    parser.add_argument(
        "--no-nodes", action="store_true", help="with --attach: do not create the scenario's nodes"
    )
    parser.add_argument(
        "--serve-registries",
        action="store_true",
        help="also serve each registry's OCI distribution API (/v2/...) on a loopback port, "
        "for a `sources` rule's endpoint",
    )
    parser.add_argument(
        "node",
        nargs="*",
        metavar="node ACTION NAME|POOL",
        help=f"change a node through the API instead: node {{{','.join(NODE_ACTIONS)}}} NAME "
        "(add takes a pool name and creates the next node of it; needs --kubeconfig or KUBECONFIG)",
    )
    parser.add_argument(
        "--kubeconfig", metavar="FILE", help="for `node ...`: the cluster to change"
    )


def _split_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--bind must be HOST:PORT, got {bind!r}")
    return host.strip("[]"), int(port)


def _node_command(args: argparse.Namespace) -> int:
    from imagesync.kubeclient import load_api_client
    from simulator.scenario import load_scenario
    from simulator.workload import ClusterOps

    words = list(args.node)
    if len(words) < 3 or words[0] != "node" or words[1] not in NODE_ACTIONS:
        print(f"usage: image-sync sim node {{{','.join(NODE_ACTIONS)}}} NAME...", file=sys.stderr)
        return 2
    ops = ClusterOps(load_api_client(args.kubeconfig))
    action, targets = words[1], words[2:]
    for target in targets:
        if action == "add":
            scenario = load_scenario(args.scenario)
            pool = scenario.pool(target)
            existing = {
                n.metadata.name
                for n in ops.core.list_node().items
                if n.metadata and n.metadata.name
            }
            index = 1
            while pool.node(index).name in existing:
                index += 1
            ops.create_node(pool.node(index))
            print(f"node/{pool.node(index).name} created")
        elif action == "remove":
            ops.remove_node(target)
            print(f"node/{target} deleted")
        elif action in ("cordon", "uncordon"):
            ops.cordon(target, action == "cordon")
            print(f"node/{target} {action}ed")
        else:
            ops.set_not_ready(target, action == "notready")
            print(f"node/{target} marked {'NotReady' if action == 'notready' else 'Ready'}")
    return 0


def _wait_for_signal() -> None:
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        del signum, frame
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    while not stop.wait(1.0):
        pass


def _attach(args: argparse.Namespace) -> int:
    from imagesync.kubeclient import load_api_client
    from simulator.clock import SimClock
    from simulator.informer import Informers
    from simulator.kubelet import KubeletSet
    from simulator.scenario import load_scenario
    from simulator.scheduler import Scheduler
    from simulator.workload import ClusterOps, WorkloadPlayer

    scenario = load_scenario(args.scenario)
    clock = SimClock(args.speed or scenario.speed)
    api = load_api_client(args.attach)
    ops = ClusterOps(api)
    if not args.no_nodes:
        for config in scenario.initial_nodes():
            ops.create_node(config)
    informers = Informers(api)
    kubelets = KubeletSet(api, clock, scenario.build_registries(clock.now()), informers=informers)
    kubelets.start()
    scheduler = None
    if not args.no_scheduler:
        scheduler = Scheduler(api, clock, informers=informers, scoring=scenario.scoring)
        scheduler.start()

    def join(pool: str, count: int) -> list[str]:
        names = []
        for _ in range(count):
            existing = {n.metadata.name for n in ops.core.list_node().items if n.metadata}
            index = 1
            while scenario.pool(pool).node(index).name in existing:
                index += 1
            ops.create_node(scenario.pool(pool).node(index))
            names.append(scenario.pool(pool).node(index).name)
        return names

    player = None if args.no_workload else WorkloadPlayer(api, clock, scenario, join=join)
    if player is not None:
        player.start()
    print(
        f"image-sync sim: kubelets attached to the API server of {args.attach} (speed x{clock.speed:g})",
        flush=True,
    )
    log.info(
        "simulated kubelets of scenario %s attached to %s",
        scenario.name,
        args.attach,
        extra={"scenario": scenario.name, "kubeconfig": args.attach, "speed": clock.speed},
    )
    _wait_for_signal()
    log.info("stopping the simulated kubelets")
    for part in (player, scheduler, kubelets):
        if part is not None:
            part.stop()
    informers.stop()
    return 0


def run(args: argparse.Namespace, config: Config) -> int:
    del config
    from simulator.scenario import ScenarioError

    try:
        if args.node:
            return _node_command(args)
        if args.attach:
            return _attach(args)
        return _serve(args)
    except (ScenarioError, ValueError) as exc:
        print(f"image-sync sim: {exc}", file=sys.stderr)
        return 2


def _serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from simulator.cluster import SimCluster

    host, port = _split_bind(args.bind)
    kubeconfig = Path(args.kubeconfig_out).resolve()
    cluster = SimCluster(
        args.scenario,
        speed=args.speed,
        host=host,
        port=port,
        scheduler=not args.no_scheduler,
        kubeconfig=kubeconfig,
    )
    cluster.start(wait_ready=False)
    try:
        if not args.no_workload:
            cluster.run_workload()
        registries = cluster.serve_registries() if args.serve_registries else {}
        for registry_host, url in sorted(registries.items()):
            print(f"image-sync sim: registry {registry_host} serves its API at {url}", flush=True)
        scenario = cluster.scenario
        nodes = len(scenario.initial_nodes())
        print(
            f"image-sync sim: scenario {scenario.name!r} ({nodes} nodes), API server {cluster.url}, "
            f"speed x{cluster.clock.speed:g}\n"
            f"  kubeconfig written to {kubeconfig}\n"
            f"  try:  kubectl --kubeconfig {kubeconfig} get nodes\n"
            f"        export KUBECONFIG={kubeconfig}; kubectl get pods -A -w\n"
            "  stop with Ctrl-C",
            flush=True,
        )
        log.info(
            "simulated cluster %s (%d nodes) serving on %s",
            scenario.name,
            nodes,
            cluster.url,
            extra={
                "scenario": scenario.name,
                "nodes": nodes,
                "url": cluster.url,
                "speed": cluster.clock.speed,
            },
        )
        _wait_for_signal()
        log.info("stopping the simulated cluster")
    finally:
        cluster.stop()
    return 0

"""The evaluation in virtual time: a discrete-event model of kubelets, registries, the scheduler
and the workload that drives the real `prefetcher.planner.plan()`, with no wall clock, threads or
HTTP, so the same inputs always give the same numbers (docs/evaluation.md)."""

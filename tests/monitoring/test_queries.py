"""Every metric and label that an alert or a dashboard panel queries is one the code exports.

The queries are parsed as PromQL (promql-parser); the exported metrics are the ones the
prefetcher's and the webhook's `Metrics` register, with their types and label names.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import promql_parser as promql
import pytest
from prometheus_client.metrics import MetricWrapperBase

from prefetcher.metrics import Metrics as PrefetcherMetrics
from tests.monitoring.shipped import queries
from webhook.metrics import Metrics as WebhookMetrics

# Labels Prometheus (or the Prometheus Operator) attaches to every scraped series.
TARGET_LABELS = frozenset(
    {"job", "instance", "namespace", "pod", "service", "container", "endpoint"}
)
SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count", "_created")}  # fmt: skip
# Grafana's interval variables, as a query sent to Prometheus would have them.
GRAFANA_VARIABLES = re.compile(r"\$__(rate_interval|interval|range)\b")


@dataclass(frozen=True)
class Selector:
    name: str
    labels: frozenset[str]


def exported() -> dict[str, frozenset[str]]:
    """Sample name → its label names, for every metric both components register."""
    wrappers: list[MetricWrapperBase] = [
        value
        for metrics in (PrefetcherMetrics(), WebhookMetrics())
        for value in vars(metrics).values()
        if isinstance(value, MetricWrapperBase)
    ]
    out: dict[str, frozenset[str]] = {}
    for metric in wrappers:
        labels = frozenset(metric._labelnames)
        for suffix in SUFFIXES[str(metric._type)]:
            out[metric._name + suffix] = labels | {"le"} if suffix == "_bucket" else labels
    return out


def parse(expr: str) -> promql.Expr:
    return promql.parse(GRAFANA_VARIABLES.sub("5m", expr))


def selectors(node: object) -> Iterator[Selector]:
    """Every series selector in an expression."""
    if isinstance(node, promql.MatrixSelector):
        node = node.vector_selector
    if isinstance(node, promql.VectorSelector):
        matchers = node.matchers.matchers
        name = node.name or next(m.value for m in matchers if m.name == "__name__")
        yield Selector(name, frozenset(m.name for m in matchers) - {"__name__"})
    elif isinstance(node, promql.BinaryExpr):
        yield from selectors(node.lhs)
        yield from selectors(node.rhs)
    elif isinstance(node, promql.Call):
        for arg in node.args:
            yield from selectors(arg)
    elif isinstance(
        node, promql.AggregateExpr | promql.ParenExpr | promql.UnaryExpr | promql.SubqueryExpr
    ):
        yield from selectors(node.expr)


def groupings(node: object) -> Iterator[tuple[frozenset[str], object]]:
    """(labels of a `by (...)`, the expression it aggregates), at every level."""
    if isinstance(node, promql.AggregateExpr):
        if node.modifier is not None and node.modifier.type == promql.AggModifierType.By:
            yield frozenset(node.modifier.labels), node.expr
        yield from groupings(node.expr)
    elif isinstance(node, promql.BinaryExpr):
        yield from groupings(node.lhs)
        yield from groupings(node.rhs)
    elif isinstance(node, promql.Call):
        for arg in node.args:
            yield from groupings(arg)
    elif isinstance(node, promql.ParenExpr | promql.UnaryExpr | promql.SubqueryExpr):
        yield from groupings(node.expr)


def test_the_parser_sees_what_a_query_reads() -> None:
    expr = parse(
        'histogram_quantile(0.9, sum by (le, registry) (rate(a_bucket{x="1"}[$__rate_interval])))'
        " / on (job) group_left b and c"
    )
    assert set(selectors(expr)) == {
        Selector("a_bucket", frozenset({"x"})),
        Selector("b", frozenset()),
        Selector("c", frozenset()),
    }
    assert [labels for labels, _ in groupings(expr)] == [frozenset({"le", "registry"})]


def test_queries_are_there() -> None:
    where = queries()
    assert sum(w.startswith("alert") for w in where) >= 10
    assert sum(w.startswith("panel") for w in where) >= 20


@pytest.mark.parametrize(("where", "expr"), sorted(queries().items()))
def test_every_queried_metric_and_label_is_exported(where: str, expr: str) -> None:
    metrics = exported()
    tree = parse(expr)
    found = list(selectors(tree))
    assert found, f"{where} reads no metric"
    for selector in found:
        assert selector.name in metrics, f"{where}: {selector.name} is not exported"
        unknown = selector.labels - metrics[selector.name] - TARGET_LABELS
        assert not unknown, f"{where}: {selector.name} has no label {sorted(unknown)}"
    for labels, inner in groupings(tree):
        available = TARGET_LABELS.union(*(metrics[s.name] for s in selectors(inner)))
        assert labels <= available, f"{where}: grouped by {sorted(labels - available)}, never set"

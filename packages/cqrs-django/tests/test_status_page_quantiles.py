"""`observability.quantiles`: PromQL's histogram_quantile on bucket counts (demo lag percentiles)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dj_cqrs.observability.quantiles import (
    buckets_from_text,
    histogram_quantile,
    merge,
    quantiles,
)

INF = math.inf


def test_interpolates_linearly_inside_the_bucket() -> None:
    buckets = [(1.0, 0.0), (2.0, 10.0), (INF, 10.0)]
    assert histogram_quantile(0.5, buckets) == 1.5
    assert histogram_quantile(0.9, buckets) == pytest.approx(1.9)
    assert histogram_quantile(1.0, buckets) == 2.0


def test_the_first_bucket_starts_at_zero() -> None:
    assert histogram_quantile(0.5, [(0.1, 10.0), (INF, 10.0)]) == pytest.approx(0.05)


def test_a_first_bucket_at_or_below_zero_returns_its_bound() -> None:
    assert histogram_quantile(0.5, [(-1.0, 10.0), (INF, 10.0)]) == -1.0


def test_the_inf_bucket_answers_the_highest_finite_bound() -> None:
    assert histogram_quantile(0.9, [(1.0, 5.0), (5.0, 6.0), (INF, 10.0)]) == 5.0


def test_what_prometheus_answers_nan_or_infinity_for() -> None:
    assert math.isnan(histogram_quantile(0.5, [(1.0, 0.0), (INF, 0.0)]))  # no observation
    assert math.isnan(histogram_quantile(0.5, [(1.0, 3.0), (2.0, 4.0)]))  # no +Inf bucket
    assert math.isnan(histogram_quantile(0.5, []))
    assert math.isnan(histogram_quantile(math.nan, [(1.0, 1.0), (INF, 1.0)]))
    assert histogram_quantile(-0.1, [(1.0, 1.0), (INF, 1.0)]) == -INF
    assert histogram_quantile(1.1, [(1.0, 1.0), (INF, 1.0)]) == INF


def test_bucket_order_does_not_matter_and_counts_are_made_monotonic() -> None:
    ordered = [(1.0, 5.0), (2.0, 5.0), (INF, 10.0)]
    assert histogram_quantile(0.4, [(INF, 10.0), (2.0, 5.0), (1.0, 5.0)]) == 0.8
    # a scrape that raced an observation: 4 < 5 is read as 5
    assert histogram_quantile(0.4, [(1.0, 5.0), (2.0, 4.0), (INF, 10.0)]) == histogram_quantile(
        0.4, ordered
    )


def test_q_zero_is_the_start_of_the_first_bucket_with_observations() -> None:
    assert histogram_quantile(0.0, [(1.0, 0.0), (2.0, 4.0), (INF, 4.0)]) == 0.0


def test_quantiles_and_merge() -> None:
    a = [(1.0, 2.0), (2.0, 4.0), (INF, 4.0)]
    b = [(1.0, 0.0), (2.0, 4.0), (INF, 6.0)]
    assert merge([a, b]) == [(1.0, 2.0), (2.0, 8.0), (INF, 10.0)]
    assert quantiles(merge([a, b]), (0.5, 0.9)) == {0.5: 1.5, 0.9: 2.0}


BOUNDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


def _cumulative(values: list[float]) -> list[tuple[float, float]]:
    return [(b, float(sum(v <= b for v in values))) for b in BOUNDS] + [(INF, float(len(values)))]


@given(
    st.lists(st.floats(min_value=0, max_value=BOUNDS[-1]), min_size=1, max_size=200),
    st.floats(min_value=0.01, max_value=1.0),
)
def test_the_estimate_is_in_the_bucket_of_the_true_quantile(values: list[float], q: float) -> None:
    """The k-th smallest value (k = ceil(q * n)) and the estimate share one bucket."""
    estimate = histogram_quantile(q, _cumulative(values))
    true = sorted(values)[max(math.ceil(q * len(values)), 1) - 1]
    upper = next(b for b in BOUNDS if true <= b)
    lower = max((b for b in BOUNDS if b < upper), default=0.0)
    assert lower <= estimate <= upper
    assert histogram_quantile(min(q + 0.01, 1.0), _cumulative(values)) >= estimate  # monotonic


def test_buckets_from_a_metrics_page() -> None:
    """End to end with prometheus_client: observe, expose as text, parse, estimate."""
    pytest.importorskip("prometheus_client")
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    registry = CollectorRegistry()
    lag = Histogram("x_lag_seconds", "lag", ["cqrs_id"], buckets=(0.1, 1.0), registry=registry)
    for value in (0.05, 0.5, 0.5, 0.5):
        lag.labels("product").observe(value)
    lag.labels("author").observe(3.0)
    text = generate_latest(registry).decode()

    found = buckets_from_text(text, "x_lag_seconds", "cqrs_id")
    assert found == {
        "product": [(0.1, 1.0), (1.0, 4.0), (INF, 4.0)],
        "author": [(0.1, 0.0), (1.0, 0.0), (INF, 1.0)],
    }
    assert histogram_quantile(0.5, found["product"]) == pytest.approx(0.1 + 0.9 * (1 / 3))
    assert buckets_from_text(text, "x_lag_seconds")[""] == merge(found.values())
    assert buckets_from_text(text, "not_there") == {}

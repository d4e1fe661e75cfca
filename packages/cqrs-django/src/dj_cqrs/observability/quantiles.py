"""Quantiles of a Prometheus histogram, computed from its cumulative bucket counts.

The same estimate as PromQL's `histogram_quantile()`: find the bucket holding the q-th
observation and interpolate linearly inside it, so that what the demo and the docs print
matches what a Grafana panel on `cqrs_replica_lag_seconds` shows. Needs no prometheus_client
except `buckets_from_text`, which parses a `/metrics` page with it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

Bucket = tuple[float, float]
"""(upper bound `le`, cumulative count of observations <= le)."""


def histogram_quantile(q: float, buckets: Iterable[Bucket]) -> float:
    """The `q`-quantile (0 <= q <= 1) estimated from cumulative `buckets`, as Prometheus does.

    The buckets need not be sorted; the `+Inf` bucket (whose count is the total) must be
    there. As in Prometheus: NaN when there is no `+Inf` bucket or no observation; the upper
    bound of the highest finite bucket when the quantile falls into `+Inf`; the lower bound of
    the first bucket is 0 (unless its upper bound is <= 0, then that bound is returned);
    counts that decrease (a scrape racing an observation) are raised to stay monotonic.
    """
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted((float(le), float(count)) for le, count in buckets)
    if len(ordered) < 2 or not math.isinf(ordered[-1][0]) or ordered[-1][0] < 0:
        return math.nan
    fixed: list[Bucket] = []
    highest = 0.0
    for le, count in ordered:
        highest = max(highest, count)
        fixed.append((le, highest))
    total = fixed[-1][1]
    if total == 0:
        return math.nan
    rank = q * total
    index = next(i for i, (_, count) in enumerate(fixed) if i == len(fixed) - 1 or count >= rank)
    if index == len(fixed) - 1:
        return fixed[-2][0]
    upper, count = fixed[index]
    if index == 0 and upper <= 0:
        return upper
    lower, below = (0.0, 0.0) if index == 0 else fixed[index - 1]
    in_bucket = count - below
    if in_bucket == 0:  # only possible when rank == below == count (q = 0): the bucket's start
        return lower
    return lower + (upper - lower) * (rank - below) / in_bucket


def quantiles(
    buckets: Sequence[Bucket], qs: Sequence[float] = (0.5, 0.9, 0.99)
) -> dict[float, float]:
    """`histogram_quantile(q, buckets)` for each of `qs`."""
    return {q: histogram_quantile(q, buckets) for q in qs}


def merge(histograms: Iterable[Sequence[Bucket]]) -> list[Bucket]:
    """Buckets of several histograms with the same bounds added up (PromQL `sum by (le)`)."""
    summed: dict[float, float] = {}
    for buckets in histograms:
        for le, count in buckets:
            summed[float(le)] = summed.get(float(le), 0.0) + float(count)
    return sorted(summed.items())


def buckets_from_text(text: str, metric: str, label: str | None = None) -> dict[str, list[Bucket]]:
    """The buckets of histogram `metric` in a `/metrics` page, by the value of `label`.

    `metric` is the name without `_bucket`, e.g. `cqrs_replica_lag_seconds`; with `label`
    (e.g. `cqrs_id`) one histogram per label value, else one under the key ""; series that
    differ in other labels are added up (PromQL `sum by (le, label)`). Needs
    prometheus_client (`pip install "cqrs-django[prometheus]"`) for its parser.
    """
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != metric:
            continue
        for sample in family.samples:
            if sample.name != f"{metric}_bucket":
                continue
            summed = found.setdefault(_label(sample.labels, label), {})
            le = float(sample.labels["le"])
            summed[le] = summed.get(le, 0.0) + float(sample.value)  # other labels: added up
    return {key: sorted(values.items()) for key, values in found.items()}


def _label(labels: Mapping[str, str], name: str | None) -> str:
    return "" if name is None else labels.get(name, "")

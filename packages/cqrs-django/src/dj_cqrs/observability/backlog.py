"""Outbox backlog gauges, computed when Prometheus scrapes (one cheap query, rate-limited).

A collector rather than a gauge updated by the relay: the backlog is a fact of the database,
true whichever relay (or none) is running, and a scrape every second must not become a query
every second on a busy table, hence `min_interval`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

logger = logging.getLogger("django-cqrs")


class OutboxBacklog:
    """A prometheus_client collector of the pending rows of one database's outbox."""

    def __init__(self, using: str = "default", *, min_interval: float = 1.0) -> None:
        self.using = using
        self.min_interval = min_interval
        self._at = float("-inf")
        self._value: tuple[int, float] = (0, 0.0)

    def describe(self) -> list[Any]:
        return []  # no query at registration time

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        pending, age = self.read()
        rows = GaugeMetricFamily(
            "cqrs_outbox_backlog_rows", "Outbox rows not sent yet.", labels=["database"]
        )
        rows.add_metric([self.using], pending)
        oldest = GaugeMetricFamily(
            "cqrs_outbox_oldest_pending_age_seconds",
            "Age of the oldest unsent outbox row (0 when none).",
            labels=["database"],
        )
        oldest.add_metric([self.using], age)
        yield rows
        yield oldest

    def read(self) -> tuple[int, float]:
        if time.monotonic() - self._at < self.min_interval:
            return self._value
        from django.db import connections
        from django.db.models import Count, Min
        from django.utils import timezone

        from dj_cqrs.outbox.models import OutboxEvent

        try:
            found = (
                OutboxEvent.objects.using(self.using)
                .filter(sent_at__isnull=True)
                .aggregate(n=Count("id"), oldest=Min("created_at"))
            )
        except Exception:  # a scrape must answer; the previous value is the best we know
            logger.warning("CQRS metrics: cannot read the outbox backlog", exc_info=True)
            return self._value
        finally:
            connections[self.using].close()  # the scrape thread keeps no session open
        oldest = found["oldest"]
        age = (timezone.now() - oldest).total_seconds() if oldest is not None else 0.0
        self._value = (int(found["n"] or 0), max(age, 0.0))
        self._at = time.monotonic()
        return self._value

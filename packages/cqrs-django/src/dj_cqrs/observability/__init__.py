"""Prometheus metrics, health endpoints and OpenTelemetry traces (`tracing`) of the services.

Everything here is optional: without `prometheus_client` (`pip install "cqrs-django[prometheus]"`)
or without `CQRS['metrics']` / `--metrics-port`, the hooks in the consumer and the outbox are
plain function calls that return at once (`metrics.ON` is False).
"""

from __future__ import annotations

from dj_cqrs.observability.metrics import enable, enabled

__all__ = ["enable", "enabled"]

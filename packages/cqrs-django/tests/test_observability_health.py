"""The `/metrics`, `/livez` and `/readyz` endpoint and the outbox backlog collector."""

from __future__ import annotations

import io
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from dj_cqrs.observability import health, server
from dj_cqrs.outbox.models import OutboxEvent

prometheus_client = pytest.importorskip("prometheus_client")


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def endpoint() -> Iterator[server.Server]:
    registry = prometheus_client.CollectorRegistry()
    prometheus_client.Counter("probe_demo", "demo", registry=registry).inc()
    served = server.Server("127.0.0.1", 0, registry)
    saved = (health.HEALTH.is_ready, health.HEALTH.last_tick)
    try:
        yield served
    finally:
        served.close()
        health.HEALTH.is_ready, health.HEALTH.last_tick = saved


def test_readyz_follows_the_readiness_signal(endpoint: server.Server) -> None:
    health.set_ready(False)
    assert get(endpoint.url + "/readyz")[0] == 503
    health.set_ready(True)
    assert get(endpoint.url + "/readyz") == (200, "ok\n")


def test_livez_fails_when_the_loop_stops_ticking(endpoint: server.Server) -> None:
    health.tick()
    assert get(endpoint.url + "/livez")[0] == 200
    health.HEALTH.last_tick = time.monotonic() - health.LIVE_TIMEOUT - 1
    assert get(endpoint.url + "/livez")[0] == 503


def test_metrics_and_unknown_paths(endpoint: server.Server) -> None:
    status, text = get(endpoint.url + "/metrics")
    assert status == 200 and "probe_demo_total 1.0" in text
    assert get(endpoint.url + "/nothing")[0] == 404


def test_probes_report_to_health() -> None:
    """The worker's probe calls (ready, not ready, tick) drive /readyz and /livez."""
    from dj_cqrs.replica.probes import Probes

    saved = (health.HEALTH.is_ready, health.HEALTH.last_tick)
    try:
        probes = health.watch(Probes())
        probes.ready()
        assert health.HEALTH.is_ready
        health.HEALTH.last_tick = 0.0
        probes.tick()
        assert health.HEALTH.alive()
        probes.not_ready()
        assert not health.HEALTH.is_ready
    finally:
        health.HEALTH.is_ready, health.HEALTH.last_tick = saved


def test_endpoint_settings(settings: Any) -> None:
    settings.CQRS = {**settings.CQRS, "metrics": {"port": 9123}}
    assert server.endpoint({}) == ("127.0.0.1", 9123)
    assert server.endpoint({"metrics_port": 0}) == ("127.0.0.1", 0)
    settings.CQRS = {**settings.CQRS, "metrics": {"port": "x"}}
    with pytest.raises(ValueError, match="port number"):
        server.endpoint({})
    settings.CQRS = {k: v for k, v in settings.CQRS.items() if k != "metrics"}
    assert server.endpoint({}) is None


def test_metrics_settings_pass_the_checks(settings: Any) -> None:
    from dj_cqrs.checks import check_settings

    settings.CQRS = {**settings.CQRS, "metrics": {"port": 9123, "addr": "0.0.0.0"}}
    assert not [m for m in check_settings() if "metrics" in m.msg]


def test_busy_port_is_a_command_error(settings: Any) -> None:
    registry = prometheus_client.CollectorRegistry()
    taken = server.Server("127.0.0.1", 0, registry)
    try:
        with pytest.raises(CommandError, match="choose another port"):
            server.serve_relay({"metrics_port": taken.port}, "default")
    finally:
        taken.close()


@pytest.mark.django_db(transaction=True)
def test_backlog_counts_pending_rows_and_their_age() -> None:
    from dj_cqrs.observability.backlog import OutboxBacklog

    old = timezone.now() - timezone.timedelta(seconds=300)
    row = OutboxEvent.objects.create(
        cqrs_id="author", instance_pk="1", signal_type="SAVE", body="{}", created_at=old
    )
    backlog = OutboxBacklog(min_interval=0.0)
    pending, age = backlog.read()
    assert pending == 1 and age >= 299
    OutboxEvent.objects.filter(id=row.id).update(sent_at=timezone.now())
    assert backlog.read() == (0, 0.0)
    registry = prometheus_client.CollectorRegistry()
    registry.register(backlog)
    assert registry.get_sample_value("cqrs_outbox_backlog_rows", {"database": "default"}) == 0


@pytest.mark.django_db(transaction=True)
def test_relay_serves_backlog(settings: Any) -> None:
    """`cqrs_relay --once --metrics-port 0` starts the endpoint and removes it on exit."""
    from cqrs_testproject.master_app.testing import use_recording

    from dj_cqrs.observability import metrics

    was = metrics.ON
    recorder = use_recording(settings)
    next(recorder)
    try:
        out = io.StringIO()
        call_command("cqrs_relay", "--once", "--metrics-port", "0", stdout=out)
        assert "cqrs_relay: metrics and health on http://127.0.0.1:" in out.getvalue()
        names = {m.name for m in prometheus_client.REGISTRY.collect()}
        assert "cqrs_outbox_backlog_rows" not in names  # unregistered at exit
    finally:
        metrics.ON = was
        next(recorder, None)

"""A real Prometheus server scrapes `cqrs_consume -w 2` and `cqrs_relay` on real RabbitMQ.

The master (this process) leaves every event to the relay (`fast_path` off, a `grace` of 3 s,
so the backlog is visible for a few scrapes); the assertions go through Prometheus's HTTP API,
as a dashboard or an alert would see the numbers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from e2e_support import MANAGE, WAIT, Backend, Replication, _replication, make_backend

from cqrs_core.testing.plugin import service_unavailable

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.timeout(300)]

SAVES = 30
DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "cqrs.json"
OUTBOX = {"master": {"outbox": {"fast_path": False, "grace": 3, "poll_interval": 0.5}}}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def wait_for(condition: Callable[[], Any], what: str, output: Callable[[], str]) -> Any:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}\n{output()}")


class Process:
    """A subprocess whose output is kept in a file (shown when the test fails)."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        self.handle = log.open("w")
        self.process = subprocess.Popen(
            args, stdout=self.handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(WAIT)
        self.handle.close()


@pytest.fixture
def rabbit_replication(
    request: pytest.FixtureRequest, settings: Any, tmp_path: Path
) -> Iterator[Replication]:
    backend: Backend
    for backend in make_backend(request, "rabbitmq", tmp_path):
        yield from _replication(backend, settings, tmp_path)


@pytest.fixture
def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        service_unavailable("Prometheus server (Debian: apt-get install prometheus)", "not on PATH")
    return str(found)


def test_prometheus_sees_consumer_and_relay(
    rabbit_replication: Replication, prometheus_binary: str, tmp_path: Path
) -> None:
    from cqrs_testproject.master_app.models import Author

    replication = rabbit_replication
    replication.configure_master(**OUTBOX)
    consume_port, relay_port, prom_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "CQRS_TEST_SETTINGS": json.dumps(replication.cqrs(**OUTBOX)),
        "CQRS_TEST_ATTEMPTS_DIR": str(replication.attempts_dir),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    consumer = Process(
        [
            sys.executable,
            str(MANAGE),
            "cqrs_consume",
            "-w",
            "2",
            "--metrics-port",
            str(consume_port),
        ],
        tmp_path / "consume.log",
        env,
    )
    relay = Process(
        [sys.executable, str(MANAGE), "cqrs_relay", "--metrics-port", str(relay_port)],
        tmp_path / "relay.log",
        env,
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        f"  - job_name: consume\n    static_configs: [{{targets: ['127.0.0.1:{consume_port}']}}]\n"
        f"  - job_name: relay\n    static_configs: [{{targets: ['127.0.0.1:{relay_port}']}}]\n"
    )
    server = Process(
        [
            prometheus_binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        tmp_path / "prometheus.log",
    )
    processes = [consumer, relay, server]

    def outputs() -> str:
        return "\n".join(f"--- {p.log.name}\n{p.text()}" for p in processes)

    def query_status(expr: str) -> str:
        url = f"http://127.0.0.1:{prom_port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": expr}
        )
        status, body = get(url)
        return f"{status} {json.loads(body).get('status') if body else ''}"

    def query(expr: str) -> float | None:
        url = f"http://127.0.0.1:{prom_port}/api/v1/query?" + urllib.parse.urlencode(
            {"query": expr}
        )
        status, body = get(url)
        if status != 200:
            return None
        result = json.loads(body)["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    try:
        ready = f"http://127.0.0.1:{consume_port}/readyz"
        wait_for(lambda: get(ready)[0] == 200, "both consumer workers ready (/readyz)", outputs)
        assert get(f"http://127.0.0.1:{consume_port}/livez")[0] == 200
        wait_for(
            lambda: get(f"http://127.0.0.1:{prom_port}/-/ready")[0] == 200,
            "Prometheus ready",
            outputs,
        )
        wait_for(lambda: query('sum(up{job=~"consume|relay"})') == 2, "both targets up", outputs)

        for n in range(SAVES):
            with transaction.atomic():
                Author.objects.create(name=f"author {n}")

        applied = 'sum(cqrs_replica_messages_total{cqrs_id="author",outcome="applied"})'
        wait_for(lambda: query(applied) == SAVES, f"{SAVES} applied in Prometheus", outputs)
        assert query('sum(cqrs_replica_lag_seconds_count{cqrs_id="author"})') == SAVES
        published = 'sum(cqrs_master_events_published_total{sender="relay"})'
        # the relay is another target, scraped at its own moment: wait for its next scrape
        wait_for(lambda: query(published) == SAVES, "the relay's published count", outputs)
        assert query("sum(cqrs_replica_batch_size_count)") >= 1
        wait_for(
            lambda: query("max_over_time(cqrs_outbox_backlog_rows[5m])") not in (None, 0.0),
            "a backlog seen while the rows waited their grace",
            outputs,
        )
        wait_for(lambda: query("cqrs_outbox_backlog_rows") == 0, "backlog back to 0", outputs)
        wait_for(
            lambda: (
                query('count(count by (pid) (cqrs_replica_in_flight_messages{job="consume"}))')
                is not None
            ),
            "the workers' in-flight gauge",
            outputs,
        )
        check_dashboard(query_status, [consume_port, relay_port])
    finally:
        for process in reversed(processes):
            with contextlib.suppress(Exception):
                process.stop()


def check_dashboard(query_status: Callable[[str], str], ports: list[int]) -> None:
    """Every query of dashboards/cqrs.json is valid PromQL and uses metrics a scrape shows."""
    import re

    exprs = [
        target["expr"]
        for panel in json.loads(DASHBOARD.read_text())["panels"]
        for target in panel["targets"]
    ]
    scraped = "".join(get(f"http://127.0.0.1:{port}/metrics")[1].decode() for port in ports)
    exposed = set(re.findall(r"\bcqrs_[a-z_]+", scraped))
    used = {name for expr in exprs for name in re.findall(r"\bcqrs_[a-z_]+", expr)}
    assert used and not used - exposed, (
        f"dashboard metrics missing from the scrape: {used - exposed}"
    )
    bad = {expr: status for expr in exprs if (status := query_status(expr)) != "200 success"}
    assert not bad, bad

"""The demo (`examples/demo/run.py`) end to end, as a person runs it: a subprocess.

Default broker (kombu filesystem://), RabbitMQ on a fresh vhost, Ctrl-C clean-up, and the
`--serve` mode driven by headless Chromium (Debian packages `chromium` and `chromium-driver`).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cqrs_core.testing.plugin import service_unavailable

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "examples" / "demo" / "run.py"
VERDICT = "VERDICT: CONSISTENT"
CHROMEDRIVER = "/usr/bin/chromedriver"

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)  # the demo's services bring their own settings
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _run_demo(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUN), *args],
        cwd=ROOT,
        env=_env(),
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _workdir(output: str) -> Path:
    found = re.search(r"work folder (\S+)", output)
    assert found, output
    return Path(found.group(1))


def _child_pids(output: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"\(pid (\d+)\)", output)]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie is gone for our purpose (it runs nothing); anything else is still running
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def _assert_cleaned_up(output: str) -> None:
    assert not _workdir(output).exists(), "the temporary folder was left behind"
    pids = _child_pids(output)
    assert len(pids) == 2, output  # the consumer and the relay
    assert all(_gone(pid) for pid in pids), f"child processes still running: {pids}"


def _assert_success(result: subprocess.CompletedProcess[str]) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert VERDICT in result.stdout, output
    for kind in ("SAVE", "DELETE", "SYNC"):
        assert re.search(rf"^  {kind}\s+[1-9]\d*\s+[1-9]\d*$", result.stdout, re.MULTILINE), output
    assert re.search(r"^  all\s+\d+\s+[\d.]+ ms\s+[\d.]+ ms$", result.stdout, re.MULTILINE), output
    _assert_lag_percentiles(result.stdout)
    _assert_cleaned_up(result.stdout)


PERCENTILES = re.compile(
    r"^  all\s+(\d+)\s+p50\s+([\d.]+) ms\s+p90\s+([\d.]+) ms\s+p99\s+([\d.]+) ms$", re.MULTILINE
)


def _assert_lag_percentiles(output: str) -> None:
    """p50 <= p90 <= p99 of the replica's lag histogram, over the SAVEs it applied."""
    assert "Replication lag percentiles (cqrs_replica_lag_seconds" in output, output
    found = PERCENTILES.search(output)
    assert found, output
    count = int(found.group(1))
    p50, p90, p99 = (float(value) for value in found.groups()[1:])
    published = re.search(r"^  SAVE\s+(\d+)\s+\d+$", output, re.MULTILINE)
    assert published, output
    assert 1 <= count <= int(published.group(1)), output  # applied SAVEs, each observed once
    # milliseconds; the demo gives up after 40 s, so no lag reaches the 60 s bucket's bound
    assert 0 < p50 <= p90 <= p99 <= 60_000, output


def test_demo_on_the_embedded_broker() -> None:
    result = _run_demo()
    _assert_success(result)
    assert "transport kombu at filesystem://" in result.stdout


# -- RabbitMQ --------------------------------------------------------------------------------


def _rabbitmq_up() -> None:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError as exc:
        service_unavailable("RabbitMQ at 127.0.0.1:5672", exc)


@pytest.fixture
def rabbitmq_url() -> Iterator[str]:
    """A fresh vhost (deleted afterwards) or, without rabbitmqctl, `/` with unique names."""
    _rabbitmq_up()
    from cqrs_rabbitmq.testing import amqp_url, temporary_vhost

    # without a vhost of our own, the demo's default names are unique per run
    with temporary_vhost("cqrs_demo") as vhost:
        yield amqp_url(vhost)


@pytest.mark.broker("rabbitmq")
def test_demo_on_rabbitmq(rabbitmq_url: str) -> None:
    run_id = uuid.uuid4().hex[:10]
    result = _run_demo(
        "--transport",
        "rabbitmq",
        "--url",
        rabbitmq_url,
        "--exchange",
        f"demo_x_{run_id}",
        "--queue",
        f"demo_q_{run_id}",
    )
    _assert_success(result)
    assert f"exchange 'demo_x_{run_id}'" in result.stdout


@pytest.mark.broker("rabbitmq")
def test_demo_on_rabbitmq_masks_the_password_and_removes_what_it_declared() -> None:
    """With the names the demo picks itself, nothing is left on the broker afterwards."""
    _rabbitmq_up()
    from cqrs_rabbitmq.testing import amqp_url, temporary_vhost

    with temporary_vhost("cqrs_demo") as vhost:
        if vhost is None:
            service_unavailable("rabbitmqctl", "needed to list what the demo left behind")
        result = _run_demo("--transport", "rabbitmq", "--url", amqp_url(vhost))
        _assert_success(result)
        assert "guest:guest@" not in result.stdout + result.stderr
        assert "guest:***@" in result.stdout
        assert _rabbitmqctl_names("list_queues", vhost) == []
        exchanges = _rabbitmqctl_names("list_exchanges", vhost)
        assert [name for name in exchanges if name and not name.startswith("amq.")] == []


def _rabbitmqctl_names(command: str, vhost: str) -> list[str]:
    done = subprocess.run(
        ["rabbitmqctl", "-q", command, "-p", vhost, "name"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [line.strip() for line in done.stdout.splitlines()[1:] if line.strip()]


# -- Ctrl-C ----------------------------------------------------------------------------------


class _Demo:
    """The demo running in the background, its output collected by a thread."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(RUN), *args],
            cwd=ROOT,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, needle: str, timeout: float) -> str:
        """The output once it contains `needle` (fails if the demo exits or time runs out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.output:
                return self.output
            if self.process.poll() is not None and not self.reader.is_alive():
                break
            time.sleep(0.05)
        self.kill()
        pytest.fail(f"{needle!r} not printed (exit {self.process.poll()}):\n{self.output}")

    def interrupt(self) -> str:
        """Ctrl-C, then the whole output once the demo has exited."""
        self.process.send_signal(signal.SIGINT)
        self.process.wait(60)
        self.reader.join(10)
        return self.output

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def test_ctrl_c_stops_the_services_and_removes_the_files() -> None:
    demo = _Demo()
    try:
        demo.wait_for("replica consumer ready", timeout=120)
        output = demo.interrupt()
    finally:
        demo.kill()
    assert demo.process.returncode == 130, output
    assert "interrupted" in output
    _assert_cleaned_up(output)


# -- --serve in Chromium ---------------------------------------------------------------------


@pytest.fixture
def chromium() -> Iterator[object]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        service_unavailable("selenium (pip install selenium)", exc)
    if not os.path.exists(CHROMEDRIVER):
        service_unavailable(
            "Chromium", f"{CHROMEDRIVER} missing (apt-get install -y chromium chromium-driver)"
        )
    options = webdriver.ChromeOptions()
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
    ):
        options.add_argument(flag)
    try:
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except Exception as exc:  # noqa: BLE001 - any start-up failure means no browser
        service_unavailable("Chromium", exc)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def test_serve_edit_in_master_admin_appears_on_replica_page(chromium: object) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver: object = chromium
    demo = _Demo("--serve", "--master-port", "0", "--replica-port", "0")
    try:
        before = demo.wait_for("reloads every second", timeout=120)
        assert VERDICT in before, before
        admin = re.search(r"master admin:\s+(http://127\.0\.0\.1:\d+)/admin/", before)
        replica = re.search(r"replica page:\s+(http://127\.0\.0\.1:\d+/)", before)
        assert admin and replica, before
        new_name = f"Edited in Chromium {uuid.uuid4().hex[:6]}"

        driver.get(f"{admin.group(1)}/admin/login/?next=/admin/shop/product/1/change/")
        driver.find_element(By.NAME, "username").send_keys("demo")
        driver.find_element(By.NAME, "password").send_keys("demo")
        driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        name = WebDriverWait(driver, 30).until(lambda d: d.find_element(By.NAME, "name"))
        name.clear()
        name.send_keys(new_name)
        driver.find_element(By.NAME, "_save").click()
        WebDriverWait(driver, 30).until(lambda d: "was changed successfully" in d.page_source)

        driver.get(replica.group(1))
        WebDriverWait(driver, 60, poll_frequency=0.5).until(
            lambda d: new_name in d.find_element(By.CSS_SELECTOR, "#product-1 .title").text
        )

        output = demo.interrupt()
    finally:
        demo.kill()
    assert demo.process.returncode == 130, output
    _assert_cleaned_up(output)

"""Transport resolution from settings, the per-thread/per-process cache, and the facades."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from cqrs_testproject.master_app.testing import RecordingTransport, use_recording
from django.core.exceptions import ImproperlyConfigured

from cqrs_core.constants import SignalType
from cqrs_core.exceptions import TransportLoadError, TransportNotFound
from cqrs_core.payload import TransportPayload
from cqrs_core.transports.memory import MemoryBroker, MemoryTransport
from dj_cqrs import conf
from dj_cqrs.transport import KafkaTransport, KombuTransport, RabbitMQTransport, TransportFacade


@pytest.fixture
def recorder(settings: Any) -> Any:
    yield from use_recording(settings)


def _payload(cqrs_id: str = "author") -> TransportPayload:
    return TransportPayload(SignalType.SAVE, cqrs_id, {"id": 1, "cqrs_revision": 0}, 1)


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ("memory", "memory"),
        ("dj_cqrs.transport.MemoryTransport", "memory"),
        ("cqrs_core.transports.memory.MemoryTransport", "memory"),
        ("cqrs_core.transports.memory:MemoryTransport", "memory"),
        ("cqrs_testproject.master_app.testing.RecordingFacade", "recording"),
        ("cqrs_testproject.master_app.testing.RecordingTransport", "recording"),
    ],
)
def test_transport_class_resolves_names_and_paths(
    settings: Any, recorder: Any, spec: str, name: str
) -> None:
    settings.CQRS = {"transport": spec}
    assert conf.transport_class().name == name


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ("rabbitmq", "rabbitmq"),
        ("dj_cqrs.transport.RabbitMQTransport", "rabbitmq"),
        ("dj_cqrs.transport.rabbit_mq.RabbitMQTransport", "rabbitmq"),
        ("dj_cqrs.transport.KombuTransport", "kombu"),
        ("dj_cqrs.transport.kombu.KombuTransport", "kombu"),
        ("dj_cqrs.transport.KafkaTransport", "kafka"),
    ],
)
def test_legacy_paths_select_the_plugin(settings: Any, spec: str, name: str) -> None:
    """Old django-cqrs paths select the plugin (every plugin is installed for the tests)."""
    settings.CQRS = {"transport": spec}
    assert conf.transport_class().name == name


def test_resolution_errors_are_clear(settings: Any) -> None:
    settings.CQRS = {"transport": "memroy"}
    with pytest.raises(TransportNotFound, match="Did you mean 'memory'"):
        conf.transport_class()
    settings.CQRS = {"transport": "no.such.module.Transport"}
    with pytest.raises(TransportLoadError, match="no.such.module"):
        conf.transport_class()
    settings.CQRS = {"transport": "dj_cqrs.conf.cqrs_settings"}
    with pytest.raises(TransportLoadError, match="not a cqrs_core BaseTransport"):
        conf.transport_class()
    settings.CQRS = {"queue": "q"}
    with pytest.raises(ImproperlyConfigured, match="CQRS\\['transport'\\] is not set"):
        conf.transport_class()
    settings.CQRS = ["not", "a", "dict"]
    with pytest.raises(ImproperlyConfigured, match="must be a dict"):
        conf.cqrs_settings()


def test_transport_cached_per_thread_and_reset(recorder: Any) -> None:
    first = conf.get_transport()
    assert conf.get_transport() is first
    other: list[Any] = []
    thread = threading.Thread(target=lambda: other.append(conf.get_transport()))
    thread.start()
    thread.join()
    assert other[0] is not first and isinstance(other[0], RecordingTransport)
    conf.reset_transport()
    assert first.closed
    assert conf.get_transport() is not first


def test_settings_change_rebuilds_transport(settings: Any, recorder: Any) -> None:
    before = conf.get_transport()
    settings.CQRS = {**settings.CQRS, "exchange": "other"}
    after = conf.get_transport()
    assert after is not before and after.common.exchange == "other"


_FORK_SCRIPT = """
import os
import django

django.setup()
from dj_cqrs import conf

parent = conf.get_transport()
read, write = os.pipe()
pid = os.fork()
if pid == 0:  # child
    try:
        child = conf.get_transport()
        ok = child is not parent and not parent.closed
        os.write(write, b"1" if ok else b"0")
    finally:
        os._exit(0)
os.close(write)
result = os.read(read, 1)
os.waitpid(pid, 0)
assert result == b"1", result
assert conf.get_transport() is parent and not parent.closed
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_transport_rebuilt_after_fork() -> None:
    """A forked child builds its own transport and leaves the parent's open.

    Runs in a fresh interpreter: forking the test runner, which may hold librdkafka's
    background threads from other tests, is unsafe whatever dj_cqrs does.
    """
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "cqrs_testproject.settings",
        "PYTHONPATH": os.pathsep.join(filter(None, [tests_dir, os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, "-c", _FORK_SCRIPT], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_facades_produce_and_clean_connection(recorder: Any) -> None:
    TransportFacade.produce(_payload())
    RabbitMQTransport.produce(_payload("product"))  # sends through the configured transport
    assert [s.routing_key for s in recorder.sent()] == ["author", "product"]
    before = conf.get_transport()
    KombuTransport.clean_connection()
    assert before.closed and conf.get_transport() is not before
    assert RabbitMQTransport.transport_name == "rabbitmq"
    assert KombuTransport.transport_name == "kombu"
    assert KafkaTransport.transport_name == "kafka"


def test_importing_facades_imports_no_broker_client() -> None:
    code = (
        "import sys, dj_cqrs.transport, dj_cqrs.transport.kombu, dj_cqrs.transport.rabbit_mq, "
        "dj_cqrs.transport.kafka, dj_cqrs.conf\n"
        "bad = [m for m in ('pika', 'kombu', 'confluent_kafka') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "cqrs_testproject.settings"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


@pytest.mark.django_db(transaction=True)
def test_master_through_memory_transport(settings: Any) -> None:
    """With the project's real memory transport, the events reach a bound queue."""
    from cqrs_testproject.master_app.models import Author

    settings.CQRS = {**settings.CQRS, "transport": "memory", "url": "memory://master_e2e"}
    broker = MemoryBroker.named("master_e2e")
    broker.bind("spy", {"author", "cqrs.spy.author"})
    try:
        author = Author.objects.create(name="Ann")
        author.cqrs_sync(queue="spy")
        # The background publisher sends after commit: wait for both, generously.
        taken: list[Any] = []
        deadline = time.monotonic() + 30
        while len(taken) < 2 and time.monotonic() < deadline:
            taken += broker.take("spy", 2 - len(taken), 1.0, 0.01)
        assert [e.routing_key for e in taken] == ["author", "cqrs.spy.author"]
        assert isinstance(conf.get_transport(), MemoryTransport)
    finally:
        conf.reset_transport()
        MemoryBroker.drop("master_e2e")

"""What django-cqrs 3.x services import, patch and call keeps working unchanged.

Import paths (`dj_cqrs.constants`, `.controller.consumer`, `.transport.*`, `.utils`,
`.correlation`, `.state`, `.delay`, `.logger`, `.dataclasses`), 3.x-style transport classes in
`CQRS['transport']` (TransportMock, custom `BaseTransport` subclasses, also in `cqrs_consume`),
the payload's `pk` / `retries` / settings TTL, and the admin without `django.contrib.admin`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import queue
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from cqrs_replica_models import DirectSyncOnly, Item
from django.contrib import admin
from django.contrib.auth.models import User
from django.core.checks import run_checks
from django.core.management import call_command
from django.db import OperationalError, connection
from django.test import RequestFactory
from django.utils import timezone
from legacy_transports import RecordingLegacyTransport
from replica_support import ConsumeProcess, data

from cqrs_core.exceptions import MalformedMessage
from cqrs_core.messages import Inbound, OutcomeKind
from cqrs_core.transports.memory import MemoryTransport
from dj_cqrs import conf

LEGACY_PATH = "legacy_transports.RecordingLegacyTransport"
WAIT = 60.0
"""Upper bound for a process to start or stop (a hang guard, not a speed assertion)."""


@pytest.fixture
def legacy(settings: Any) -> Any:
    """`CQRS['transport']` names the recording 3.x-style class."""
    RecordingLegacyTransport.clear()
    settings.CQRS = {**settings.CQRS, "transport": LEGACY_PATH}
    yield RecordingLegacyTransport
    RecordingLegacyTransport.clear()


# -- dj_cqrs.constants ----------------------------------------------------------------------


def test_constants_have_their_3x_names_and_values() -> None:
    from dj_cqrs import constants

    assert constants.ALL_BASIC_FIELDS == "__all__"
    assert constants.NO_QUEUE == "None"
    assert constants.FIELDS_TRACKER_FIELD_NAME == "__fields_tracker"
    assert constants.TRACKED_FIELDS_ATTR_NAME == "__tracked_fields"
    assert constants.DEFAULT_DEAD_MESSAGE_TTL == 864000
    assert constants.DEFAULT_MASTER_AUTO_UPDATE_FIELDS is False
    assert constants.DEFAULT_MASTER_MESSAGE_TTL == 86400
    assert constants.DEFAULT_REPLICA_MAX_RETRIES == 30
    assert constants.DEFAULT_REPLICA_RETRY_DELAY == 2
    assert constants.DEFAULT_REPLICA_DELAY_QUEUE_MAX_SIZE == 1000
    assert constants.DB_VENDOR_PG == "postgresql" and constants.DB_VENDOR_MYSQL == "mysql"
    assert set(constants.SUPPORTED_TIMEOUT_DB_VENDORS) == {"postgresql", "mysql"}
    assert constants.PG_TIMEOUT_FLAG == "statement timeout"
    assert constants.MYSQL_TIMEOUT_ERROR_CODE == 3024
    assert constants.SignalType.SAVE == "SAVE" and constants.SignalType.SYNC == "SYNC"
    # our own code uses them rather than copies
    from dj_cqrs.management import _pipes
    from dj_cqrs.master import serialization

    assert _pipes.NO_QUEUE is constants.NO_QUEUE
    assert serialization.ALL_FIELDS is constants.ALL_BASIC_FIELDS


# -- transports -----------------------------------------------------------------------------


def test_base_transport_is_the_3x_class_and_facades_derive_from_it() -> None:
    import dj_cqrs.transport as transport
    from dj_cqrs.transport import base, kombu, rabbit_mq

    assert transport.BaseTransport is base.BaseTransport
    for call in (
        lambda: base.BaseTransport.produce(None),
        lambda: base.BaseTransport.consume(),
        lambda: base.BaseTransport.clean_connection(),
    ):
        with pytest.raises(NotImplementedError):
            call()
    for facade in (transport.RabbitMQTransport, transport.KombuTransport, transport.KafkaTransport):
        assert issubclass(facade, base.BaseTransport)
    assert rabbit_mq.RabbitMQTransport is transport.RabbitMQTransport
    assert kombu.KombuTransport is transport.KombuTransport
    assert rabbit_mq.LoggingMixin is kombu.LoggingMixin
    assert rabbit_mq.BaseTransport is base.BaseTransport


def test_transport_mock_hands_the_payload_back(settings: Any) -> None:
    from dj_cqrs.dataclasses import TransportPayload
    from dj_cqrs.transport.mock import TransportMock

    payload = TransportPayload("SAVE", "item", {"id": 1}, 1)
    assert TransportMock.produce(payload) is payload
    assert TransportMock.consume() is None
    assert TransportMock.consume(payload, cqrs_ids={"item"}) is payload
    settings.CQRS = {**settings.CQRS, "transport": "dj_cqrs.transport.mock.TransportMock"}
    assert conf.legacy_transport_class() is TransportMock


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (LEGACY_PATH, RecordingLegacyTransport),
        (RecordingLegacyTransport, RecordingLegacyTransport),
        ("memory", None),
        ("dj_cqrs.transport.RabbitMQTransport", None),
        ("dj_cqrs.transport.rabbit_mq.RabbitMQTransport", None),
        ("cqrs_core.transports.memory.MemoryTransport", None),
        ("cqrs_testproject.master_app.testing.RecordingFacade", None),
        ("no.such.module.Transport", None),
    ],
)
def test_legacy_transport_class(settings: Any, spec: Any, expected: Any) -> None:
    settings.CQRS = {**settings.CQRS, "transport": spec}
    assert conf.legacy_transport_class() is expected


def test_legacy_transport_class_follows_setting_changes(settings: Any) -> None:
    settings.CQRS = {**settings.CQRS, "transport": LEGACY_PATH}
    assert conf.legacy_transport_class() is RecordingLegacyTransport
    settings.CQRS = {**settings.CQRS, "transport": "memory"}
    assert conf.legacy_transport_class() is None


def test_cqrs_core_transport_wanted_while_a_legacy_class_is_set(legacy: Any) -> None:
    with pytest.raises(conf.LegacyTransportConfigured, match="RecordingLegacyTransport"):
        conf.get_transport()
    errors = [e for e in run_checks(tags=["cqrs"]) if e.id == "cqrs.E003"]
    assert errors == []  # a 3.x-style class is a valid setting


def test_current_transport_is_resolved_when_read(settings: Any) -> None:
    import dj_cqrs.transport as transport

    settings.CQRS = {**settings.CQRS, "transport": "memory"}
    assert transport.current_transport is transport.MemoryTransport
    settings.CQRS = {**settings.CQRS, "transport": "dj_cqrs.transport.rabbit_mq.RabbitMQTransport"}
    assert transport.current_transport is transport.RabbitMQTransport
    settings.CQRS = {**settings.CQRS, "transport": LEGACY_PATH}
    from dj_cqrs.transport import current_transport

    assert current_transport is RecordingLegacyTransport


# -- cqrs_consume with a 3.x-style class ----------------------------------------------------


@pytest.mark.django_db
def test_cqrs_consume_calls_the_legacy_class(legacy: Any) -> None:
    call_command("cqrs_consume")
    call_command("cqrs_consume", "--cqrs-id", "item", "--cqrs-id", "direct_only")
    assert legacy.consumed == [{}, {"cqrs_ids": {"item", "direct_only"}}]


@pytest.mark.slow
def test_cqrs_consume_workers_run_the_legacy_class(tmp_path: Path) -> None:
    env = {
        "CQRS_TEST_SETTINGS": f'{{"transport": "{LEGACY_PATH}"}}',
        "CQRS_TEST_LEGACY_DIR": str(tmp_path),
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])
        ),
    }
    proc = ConsumeProcess("-w", "2", "--cqrs-id", "item", env=env)
    try:
        deadline = time.monotonic() + WAIT
        while len(list(tmp_path.glob("*.txt"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        files = list(tmp_path.glob("*.txt"))
        assert len(files) >= 2, proc.text
        assert {f.read_text() for f in files} == {"['item']"}
    finally:
        proc.stop()
        proc.kill()


# -- dj_cqrs.controller.consumer ------------------------------------------------------------


@pytest.mark.django_db
def test_controller_consume_applies_and_returns_the_instance() -> None:
    from dj_cqrs.controller.consumer import consume, route_signal_to_replica_model
    from dj_cqrs.dataclasses import TransportPayload

    saved = consume(TransportPayload("SAVE", "item", data(1, 0, 1, name="a"), 1))
    assert isinstance(saved, Item) and Item.objects.get(pk=1).name == "a"
    again = route_signal_to_replica_model("SAVE", "item", data(1, 1, 2, name="b"))
    assert again and Item.objects.get(pk=1).name == "b"
    assert route_signal_to_replica_model("DELETE", "item", data(1, 2, 3))
    assert not Item.objects.filter(pk=1).exists()


@pytest.mark.django_db
def test_controller_only_direct_syncs(settings: Any) -> None:
    from dj_cqrs.controller.consumer import route_signal_to_replica_model

    settings.CQRS = {**settings.CQRS, "queue": "replica"}
    assert route_signal_to_replica_model("SYNC", "direct_only", data(1, 0, 1, name="x")) is True
    assert route_signal_to_replica_model(
        "SYNC", "direct_only", data(1, 0, 1, name="x"), queue="other"
    )
    assert not DirectSyncOnly.objects.exists()
    route_signal_to_replica_model("SYNC", "direct_only", data(1, 0, 1, name="x"), queue="replica")
    assert DirectSyncOnly.objects.get(pk=1).name == "x"


@pytest.mark.django_db
def test_unknown_signal_type_and_cqrs_id(caplog: Any, memory_transport: MemoryTransport) -> None:
    from dj_cqrs.consumer import make_handler
    from dj_cqrs.controller.consumer import route_signal_to_replica_model
    from dj_cqrs.dataclasses import TransportPayload

    with caplog.at_level(logging.WARNING, logger="django-cqrs"):
        assert route_signal_to_replica_model("FOO", "item", data(1, 0, 1, name="a")) is None
        assert route_signal_to_replica_model("SAVE", "nope", data(1, 0, 1, name="a")) is None
    assert 'Bad signal type "FOO" for CQRS_ID "item"' in caplog.text
    assert '"nope"' in caplog.text
    assert not Item.objects.exists()
    body = {"signal_type": "FOO", "cqrs_id": "item", "instance_data": {"id": 1}}
    with pytest.raises(MalformedMessage, match="signal_type"):
        TransportPayload.from_message(body)
    # on the wire: dead-lettered with the reason, the consumer goes on
    message = Inbound(body=b'{"signal_type":"FOO","cqrs_id":"item","instance_data":{"id":1}}')
    [settled] = memory_transport.dispatch(make_handler(), [message], cqrs_ids=None)
    assert settled.outcome.kind is OutcomeKind.DEAD
    assert "signal_type" in settled.outcome.reason


@pytest.fixture
def memory_transport() -> Any:
    transport = MemoryTransport({"url": f"memory://legacy_{uuid.uuid4().hex}", "queue": "q"})
    yield transport
    transport.close()


# -- dj_cqrs.utils, correlation, state, delay, logger ---------------------------------------


def test_get_message_expiration_dt(settings: Any) -> None:
    from dj_cqrs.utils import get_message_expiration_dt

    settings.CQRS = {**settings.CQRS, "master": {"CQRS_MESSAGE_TTL": 60}}
    before = timezone.now()
    expires = get_message_expiration_dt()
    assert before + dt.timedelta(seconds=60) <= expires <= timezone.now() + dt.timedelta(seconds=60)
    assert get_message_expiration_dt(10) <= timezone.now() + dt.timedelta(seconds=10)
    settings.CQRS = {**settings.CQRS, "master": {"CQRS_MESSAGE_TTL": None}}
    assert get_message_expiration_dt() is None
    settings.CQRS = {k: v for k, v in settings.CQRS.items() if k != "master"}
    assert get_message_expiration_dt() >= before + dt.timedelta(seconds=86400)


def test_delay_queue_settings(settings: Any) -> None:
    from dj_cqrs import utils

    settings.CQRS = {k: v for k, v in settings.CQRS.items() if k != "replica"}
    assert utils.get_delay_queue_max_size() is None
    assert utils.get_messages_prefetch_count_per_worker() == 0
    settings.CQRS = {**settings.CQRS, "replica": {}}
    assert utils.get_delay_queue_max_size() == 1000
    settings.CQRS = {**settings.CQRS, "replica": {"delay_queue_max_size": 5}}
    assert utils.get_messages_prefetch_count_per_worker() == 6


def test_get_json_valid_value() -> None:
    from dj_cqrs.utils import get_json_valid_value

    key = uuid.uuid4()
    assert get_json_valid_value(key) == str(key)
    assert get_json_valid_value(dt.date(2020, 1, 2)) == "2020-01-02"
    assert get_json_valid_value(5) == 5


class _FakeConnection:
    def __init__(self, vendor: str) -> None:
        self.vendor = vendor
        self.sql: list[str] = []
        self.execute_wrappers: list[Any] = []

    def cursor(self) -> Any:
        outer = self

        class Cursor:
            def __enter__(self) -> Any:
                return self

            def __exit__(self, *exc: object) -> None:
                pass

            def execute(self, sql: str, params: Any = None) -> None:
                outer.sql.append(sql)

        return Cursor()


def test_query_timeouts_per_database(settings: Any, monkeypatch: Any) -> None:
    from dj_cqrs import logger as cqrs_logger
    from dj_cqrs import utils

    settings.CQRS = {**settings.CQRS, "replica": {"CQRS_QUERY_TIMEOUT": 250}}
    for vendor, expected in [
        ("postgresql", ["SET statement_timeout = 250"]),
        ("mysql", ["SET SESSION MAX_EXECUTION_TIME=250"]),
        ("sqlite", []),
    ]:
        fake = _FakeConnection(vendor)
        monkeypatch.setattr(cqrs_logger, "connection_for", lambda model, fake=fake: fake)
        assert utils.apply_query_timeouts(Item) is None
        assert fake.sql == expected
        assert len(fake.execute_wrappers) == (1 if expected else 0)
    fake = _FakeConnection("postgresql")
    assert utils.set_query_timeout(fake, local=True)
    assert fake.sql == ["SET LOCAL statement_timeout = 250"]
    settings.CQRS = {**settings.CQRS, "replica": {"CQRS_QUERY_TIMEOUT": 0}}
    assert not utils.set_query_timeout(fake, local=True)


@pytest.mark.django_db
def test_query_timeout_reaches_postgresql(settings: Any) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only (CQRS_TEST_DB=postgres)")
    from dj_cqrs.utils import apply_query_timeouts

    settings.CQRS = {**settings.CQRS, "replica": {"CQRS_QUERY_TIMEOUT": 1234}}
    apply_query_timeouts(Item)
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == "1234ms"
        cursor.execute("SET statement_timeout = 0")


def test_log_timed_out_queries(settings: Any, monkeypatch: Any, caplog: Any) -> None:
    from dj_cqrs import logger as cqrs_logger

    fake = _FakeConnection("postgresql")
    monkeypatch.setattr(cqrs_logger, "connection_for", lambda model: fake)
    cqrs_logger.install_last_query_capturer(Item)
    cqrs_logger.install_last_query_capturer(Item)
    [capturer] = fake.execute_wrappers
    capturer(lambda *args: None, "SELECT slow()", None, False, {})
    timeout = OperationalError("canceling statement due to statement timeout")
    settings.CQRS = {**settings.CQRS, "replica": {"CQRS_QUERY_LOGGER": "cqrs-q"}}
    with caplog.at_level(logging.ERROR, logger="cqrs-q"):
        cqrs_logger.log_timed_out_queries(timeout, Item)  # not enabled
        assert "SELECT slow()" not in caplog.text
        settings.CQRS = {
            **settings.CQRS,
            "replica": {"CQRS_QUERY_LOGGER": "cqrs-q", "CQRS_LOG_TIMED_OUT_QUERIES": True},
        }
        cqrs_logger.log_timed_out_queries(OperationalError("deadlock"), Item)
        assert "SELECT slow()" not in caplog.text
        cqrs_logger.log_timed_out_queries(timeout, Item)
    assert "Timed out query:\nSELECT slow()" in caplog.text


@pytest.mark.parametrize("code", [3024, 1969], ids=["mysql", "mariadb"])
def test_log_timed_out_queries_on_mysql_and_mariadb(
    settings: Any, monkeypatch: Any, caplog: Any, code: int
) -> None:
    """MySQL stops a query with error 3024 (MAX_EXECUTION_TIME), MariaDB with 1969."""
    from dj_cqrs import logger as cqrs_logger

    fake = _FakeConnection("mysql")
    monkeypatch.setattr(cqrs_logger, "connection_for", lambda model: fake)
    cqrs_logger.install_last_query_capturer(Item)
    [capturer] = fake.execute_wrappers
    capturer(lambda *args: None, "SELECT slow()", None, False, {})
    settings.CQRS = {**settings.CQRS, "replica": {"CQRS_LOG_TIMED_OUT_QUERIES": True}}
    with caplog.at_level(logging.ERROR, logger="django-cqrs"):
        cqrs_logger.log_timed_out_queries(OperationalError(1213, "deadlock"), Item)
        assert "SELECT slow()" not in caplog.text
        cqrs_logger.log_timed_out_queries(OperationalError(code, "interrupted"), Item)
    assert "Timed out query:\nSELECT slow()" in caplog.text


def test_get_correlation_id(settings: Any) -> None:
    from dj_cqrs.correlation import get_correlation_id

    assert get_correlation_id("SAVE", "item", 1, None) is None
    settings.CQRS = {
        **settings.CQRS,
        "master": {"correlation_function": lambda *args: "-".join(map(str, args))},
    }
    assert get_correlation_id("SAVE", "item", 1, "q") == "SAVE-item-1-q"


def test_cqrs_state_starts_empty_in_every_thread() -> None:
    import threading

    from dj_cqrs.state import cqrs_state

    seen: list[Any] = []
    thread = threading.Thread(target=lambda: seen.append(cqrs_state.bulk_relate_cm))
    thread.start()
    thread.join(WAIT)
    assert seen == [None] and cqrs_state.bulk_relate_cm is None


@pytest.mark.django_db
def test_bulk_relate_cqrs_serialization(django_assert_num_queries: Any) -> None:
    from cqrs_testproject.master_app.models import Author

    from dj_cqrs.state import cqrs_state
    from dj_cqrs.utils import bulk_relate_cqrs_serialization

    first = Author.objects.create(name="a")
    second = Author.objects.create(name="b")

    @bulk_relate_cqrs_serialization()
    def decorated() -> Any:
        return cqrs_state.bulk_relate_cm

    assert decorated() is not None and cqrs_state.bulk_relate_cm is None
    with pytest.raises(ValueError), bulk_relate_cqrs_serialization("author"):
        raise ValueError
    assert cqrs_state.bulk_relate_cm is None

    with bulk_relate_cqrs_serialization("author"):
        cm = cqrs_state.bulk_relate_cm
        cm.register(first, "default")
        cm.register(second, "default")
        cm.register(Item(id=1), "default")  # another CQRS_ID: ignored
        with django_assert_num_queries(1):
            assert cm.get_cached_instance(first, "default") == first
            assert cm.get_cached_instance(second, "default") == second
            assert cm.get_cached_instance(Item(id=1), "default") is None
            assert cm.get_cached_instance(first, "other") is None


def test_delay_queue() -> None:
    from dj_cqrs.delay import DelayMessage, DelayQueue

    now = timezone.now()
    delayed = DelayQueue(max_size=3)
    delayed.put(DelayMessage(1, "late", now + dt.timedelta(hours=1)))
    delayed.put(DelayMessage(2, "due", now - dt.timedelta(seconds=1)))
    delayed.put(DelayMessage(3, "due too", now - dt.timedelta(seconds=1)))
    assert delayed.full() and delayed.qsize() == 3
    with pytest.raises(queue.Full):
        delayed.put(DelayMessage(4, "x", now))
    assert [m.payload for m in delayed.get_ready()] == ["due", "due too"]
    assert delayed.qsize() == 1 and delayed.get().payload == "late"
    with pytest.raises(ValueError, match="max_size"):
        DelayQueue(max_size=0)
    with pytest.raises(TypeError):
        DelayQueue().put("not a message")  # type: ignore[arg-type]


# -- TransportPayload -----------------------------------------------------------------------


def test_payload_pk_retries_and_settings_ttl(settings: Any) -> None:
    from dj_cqrs.dataclasses import TransportPayload

    payload = TransportPayload("SAVE", "item", {"id": 7}, 7)
    assert payload.pk == 7
    payload.retries = 2
    assert payload.to_dict()["retries"] == 2
    body = {"signal_type": "SAVE", "cqrs_id": "item", "instance_data": {"id": 7}}
    settings.CQRS = {**settings.CQRS, "master": {"CQRS_MESSAGE_TTL": 60}}
    expires = TransportPayload.from_message(body).expires
    assert expires is not None and expires <= timezone.now() + dt.timedelta(seconds=60)
    assert expires >= timezone.now() + dt.timedelta(seconds=55)
    settings.CQRS = {**settings.CQRS, "master": {"CQRS_MESSAGE_TTL": None}}
    assert TransportPayload.from_message(body).expires is None
    settings.CQRS = {k: v for k, v in settings.CQRS.items() if k != "master"}  # a pure replica
    expires = TransportPayload.from_message(body).expires
    assert expires is not None and expires > timezone.now() + dt.timedelta(hours=23)


# -- admin ----------------------------------------------------------------------------------


def test_admin_imports_without_the_admin_app(tmp_path: Path) -> None:
    (tmp_path / "no_admin_settings.py").write_text(
        textwrap.dedent(
            """
            SECRET_KEY = "x"
            USE_TZ = True
            INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "dj_cqrs"]
            DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
            CQRS = {"transport": "memory", "queue": "q"}
            """
        )
    )
    code = (
        "import django; django.setup()\n"
        "from django.contrib.admin import AdminSite, ModelAdmin\n"
        "from dj_cqrs.admin import CQRSAdminMasterSyncMixin, register_outbox_admin\n"
        "from dj_cqrs.outbox.models import OutboxEvent\n"
        "site = AdminSite(name='mine')\n"
        "register_outbox_admin(site)\n"
        "assert site.is_registered(OutboxEvent)\n"
        "print('ok')\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "no_admin_settings",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=WAIT
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_sync_action_on_a_custom_site_with_actions_of_its_own() -> None:
    from cqrs_testproject.master_app.models import Author

    from dj_cqrs.admin import CQRSAdminMasterSyncMixin
    from dj_cqrs.outbox.models import OutboxEvent

    class MySite(admin.AdminSite):
        pass

    class AuthorAdmin(CQRSAdminMasterSyncMixin, admin.ModelAdmin):  # type: ignore[type-arg]
        actions = ["delete_selected"]

    site = MySite(name="my_admin")
    site.register(Author, AuthorAdmin)
    request = RequestFactory().get("/")
    request.user = User(username="root", is_superuser=True, is_active=True)
    actions = site._registry[Author].get_actions(request)
    assert {"delete_selected", "sync_items"} <= set(actions)
    assert not site.is_registered(OutboxEvent)  # importing dj_cqrs.admin left it alone
    assert admin.site.is_registered(OutboxEvent)  # the default site has it (autodiscovery)


def test_payload_built_by_hand_gets_the_correlation_id(settings: Any) -> None:
    """As django-cqrs 3.x's constructor: no correlation_id given -> the configured function's."""
    from dj_cqrs.constants import SignalType
    from dj_cqrs.dataclasses import TransportPayload

    settings.CQRS = {
        **settings.CQRS,
        "master": {"correlation_function": lambda *args: ":".join(map(str, args))},
    }
    payload = TransportPayload(SignalType.DELETE, "author", {"id": 1}, 1)
    assert payload.correlation_id == "DELETE:author:1:None"
    given = TransportPayload(SignalType.SAVE, "author", {"id": 1}, 1, correlation_id="mine")
    assert given.correlation_id == "mine"
    settings.CQRS = {**settings.CQRS, "master": {"correlation_function": "no.such.function"}}
    assert TransportPayload(SignalType.SAVE, "author", {"id": 1}, 1).correlation_id is None

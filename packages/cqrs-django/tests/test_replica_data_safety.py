"""Replica data safety: a value is stored exactly as sent or the message is rejected with a reason.

Every bad message is tried on both apply paths (bulk and one by one), which must agree: no
truncation, no silent coercion, and a message that can never fit goes to the dead letters at
once (no retries, no traceback per attempt). The last test sends bad messages among good ones
through a real RabbitMQ to a real `cqrs_consume` and counts its log lines.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import django
import hypothesis
import pytest
from cqrs_replica_models import Item, ProductRef, TypedRef, VoucherRef
from cqrs_testproject.replica_app.models import MappedItem
from django.db import DataError, IntegrityError, OperationalError, connection, transaction
from hypothesis import strategies as st
from replica_support import (  # noqa: F401  (fixture)
    ConsumeProcess,
    at,
    data,
    memory_cqrs_fixture,
    payload,
)

from cqrs_core.constants import SignalType
from cqrs_core.payload import TransportPayload
from dj_cqrs.consumer import make_handler
from dj_cqrs.replica import errors
from dj_cqrs.replica.batch import _key_in
from dj_cqrs.replica.mapping import REVISION_MAX, BadData
from dj_cqrs.replica.tombstone import Tombstone
from dj_cqrs.replica.upsert import upsert

ON_POSTGRESQL = connection.vendor == "postgresql"
LONG = "x" * 150
"""Longer than `Item.name` (max_length=100)."""


def kinds(outcomes: Any) -> list[str]:
    return [outcome.kind.value for outcome in outcomes]


@pytest.fixture(params=[True, False], ids=["bulk", "one-by-one"])
def bulk(request: pytest.FixtureRequest, settings: Any) -> bool:
    settings.CQRS = {
        **settings.CQRS,
        "replica": {**settings.CQRS["replica"], "CQRS_BULK_APPLY": request.param},
    }
    return bool(request.param)


def apply(*payloads: TransportPayload) -> list[Any]:
    return list(make_handler()(list(payloads)))


def cqrs_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "django-cqrs" and r.levelno >= logging.WARNING]


# -- item 1: no silent truncation ------------------------------------------------------------


@pytest.mark.django_db
def test_over_long_string_is_rejected_on_both_paths_not_truncated(
    bulk: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "django-cqrs")
    outcomes = apply(
        payload("item", data(1, 0, 0, name="good one")),
        payload("item", data(2, 0, 0, name=LONG)),
        payload("item", data(3, 0, 0, name="x" * 100)),  # exactly the limit: fits
    )
    assert kinds(outcomes) == ["applied", "dead", "applied"]
    assert "150 characters, the column holds 100" in outcomes[1].reason
    assert sorted(Item.objects.values_list("pk", "name")) == [(1, "good one"), (3, "x" * 100)]
    # no traceback and no fallback of the batch to the slow path; the dead letter itself is
    # logged once, with this reason, by `cqrs_consume` (see the RabbitMQ test below)
    assert cqrs_records(caplog) == []


@pytest.mark.django_db
def test_over_long_update_keeps_the_stored_row(bulk: bool) -> None:
    assert kinds(apply(payload("item", data(1, 0, 0, name="kept")))) == ["applied"]
    outcomes = apply(payload("item", data(1, 1, 1, name=LONG)))
    assert kinds(outcomes) == ["dead"]
    assert Item.objects.get(pk=1).name == "kept"
    assert Item.objects.get(pk=1).cqrs_revision == 0


@pytest.mark.django_db
def test_trailing_spaces_are_not_cut_either(bulk: bool) -> None:
    """PostgreSQL cuts excess spaces of a varchar(n) without an error, even on a plain INSERT."""
    outcomes = apply(payload("item", data(1, 0, 0, name="a" + " " * 120)))
    assert kinds(outcomes) == ["dead"]
    assert not Item.objects.exists()


def _typed(pk: int, revision: int, **fields: Any) -> TransportPayload:
    return payload("typed", data(pk, revision, revision, char="c", **fields))


@pytest.mark.django_db
@pytest.mark.parametrize(
    "token",
    [
        "459f0390-76e0-99f9-44d5-017262279051",  # version 9, variant 0: MariaDB refuses it
        "not-a-uuid",
    ],
)
def test_a_value_one_database_refuses_is_refused_everywhere_even_when_overwritten(
    bulk: bool, token: str
) -> None:
    """A later event of the row in the same batch must not hide a refused value on the bulk
    path (it never writes intermediate values): the shared validation refuses it first."""
    valid = "459f0390-76e0-49f9-84d5-017262279051"
    outcomes = apply(_typed(1, 0, token=token), _typed(1, 1, token=valid))
    mariadb_only = token.startswith("459f") and not (
        connection.vendor == "mysql" and connection.features.has_native_uuid_field
    )
    assert kinds(outcomes) == (["applied", "applied"] if mariadb_only else ["dead", "applied"])
    assert str(TypedRef.objects.get().token) == valid


@pytest.mark.django_db
def test_an_address_that_is_no_ip_address_is_refused(bulk: bool) -> None:
    """PostgreSQL's inet refuses it, the others would store it: refused on every database."""
    outcomes = apply(_typed(1, 0, address="300.1.1.1"), _typed(1, 1, address="10.0.0.1"))
    assert kinds(outcomes) == ["dead", "applied"]
    assert "IPv4 or IPv6" in outcomes[0].reason
    assert TypedRef.objects.get().address == "10.0.0.1"


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not ON_POSTGRESQL, reason="the bulk statement with arrays is PostgreSQL's")
def test_bulk_upsert_lets_the_database_reject_what_its_column_cannot_hold() -> None:
    """Even without the checks of `mapping.fit`, the bulk statement must not cut values."""
    row = Item(id=1, name=LONG, cqrs_revision=0, cqrs_updated=at(0))
    with pytest.raises(DataError, match="too long"), transaction.atomic():
        upsert(Item, "default", [row], ["id"], ["name", "cqrs_revision", "cqrs_updated"])
    assert not Item.objects.exists()


@pytest.mark.django_db
@pytest.mark.skipif(not ON_POSTGRESQL, reason="the key arrays are PostgreSQL's")
def test_over_long_key_does_not_match_a_stored_one_by_its_prefix() -> None:
    """A cast of the keys to varchar(255)[] would make a 300-character key match its prefix."""
    Tombstone.objects.create(cqrs_id="item", instance_pk="k" * 255, cqrs_revision=1)
    found = Tombstone.objects.filter(_key_in(Tombstone, "default", "instance_pk", ["k" * 300]))
    assert not found.exists()


def test_delete_of_a_key_too_long_for_its_tombstone_is_rejected() -> None:
    """A CharField key longer than `Tombstone.instance_pk` (255) could not record its DELETE."""
    from types import SimpleNamespace

    from django.db import models

    from dj_cqrs.replica.mapping import pk_from_delete, to_pk

    pk = models.CharField(max_length=400, primary_key=True)
    pk.name = "id"
    model = SimpleNamespace(CQRS_MAPPING=None, _meta=SimpleNamespace(pk=pk))
    assert pk_from_delete(model, {"id": "k" * 255}) == "k" * 255
    with pytest.raises(BadData, match="tombstone holds 255"):
        pk_from_delete(model, {"id": "k" * 256})
    with pytest.raises(BadData, match="401 characters, the column holds 400"):
        to_pk(model, "k" * 401)  # a SAVE's key: cut, it could update another row


# -- item 2: revisions and field values --------------------------------------------------------

BAD_REVISIONS = [-1, 3.9, 3.0, "7", True, REVISION_MAX + 1, 10**30, [1], {"r": 1}]


@pytest.mark.django_db
@pytest.mark.parametrize("revision", BAD_REVISIONS, ids=repr)
def test_bad_revisions_are_rejected(bulk: bool, revision: Any) -> None:
    outcomes = apply(
        payload(
            "item", {"id": 1, "cqrs_revision": revision, "cqrs_updated": str(at(0)), "name": "n"}
        )
    )
    assert kinds(outcomes) == ["dead"]
    assert "cqrs_revision" in outcomes[0].reason
    assert not Item.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("revision", [-1, 2.5, "3"], ids=repr)
def test_bad_delete_revisions_are_rejected(bulk: bool, revision: Any) -> None:
    apply(payload("item", data(1, 0, 0, name="kept")))
    outcomes = apply(
        payload(
            "item",
            {"id": 1, "cqrs_revision": revision, "cqrs_updated": str(at(1))},
            SignalType.DELETE,
        )
    )
    assert kinds(outcomes) == ["dead"]
    assert Item.objects.get(pk=1).name == "kept"
    assert not Tombstone.objects.exists()


@pytest.mark.django_db
def test_largest_revision_the_column_holds_is_applied_and_logged_loudly(
    bulk: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Not refused (3.x applies every gap), but an error in the log says how to repair it."""
    apply(payload("item", data(1, 0, 0, name="a")))
    caplog.set_level(logging.WARNING, "django-cqrs")
    assert kinds(apply(payload("item", data(1, REVISION_MAX, 1, name="pinned")))) == ["applied"]
    loud = [r for r in cqrs_records(caplog) if r.levelno == logging.ERROR]
    assert len(loud) == 1 and "cqrs_sync" in loud[0].getMessage()
    # a SYNC repairs the pinned row
    sync = payload("item", data(1, 5, 2, name="repaired"), SignalType.SYNC, queue="replica")
    assert kinds(apply(sync)) == ["applied"]
    assert Item.objects.get(pk=1).name == "repaired"


@pytest.mark.django_db
def test_an_ordinary_gap_is_still_applied_with_a_warning(
    bulk: bool, caplog: pytest.LogCaptureFixture
) -> None:
    apply(payload("item", data(1, 0, 0, name="a")))
    caplog.set_level(logging.WARNING, "django-cqrs")
    assert kinds(apply(payload("item", data(1, 50, 1, name="b")))) == ["applied"]
    assert [r.levelno for r in cqrs_records(caplog)] == [logging.WARNING]
    assert Item.objects.get(pk=1).name == "b"


BAD_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    ("item", {"name": {"first": "a"}}, "a dict does not fit CharField"),
    ("item", {"name": ["a", "b"]}, "a list does not fit CharField"),
    ("mapped_item", {"name": "n", "quantity": 3.9}, "not a whole number"),
    ("mapped_item", {"name": "n", "quantity": Decimal("2.5")}, "not a whole number"),
    ("mapped_item", {"name": "n", "quantity": "3.9"}, "must be an integer"),
    ("mapped_item", {"name": "n", "quantity": 2**31}, "out of the column's range"),
    ("mapped_item", {"name": "n", "quantity": float("inf")}, "infinity"),
    ("voucher", {"code": "c", "value": {"v": 1}}, "a dict does not fit IntegerField"),
    ("product", {"name": "p", "price": "1.555"}, "decimal places"),
    ("product", {"name": "p", "price": 1.555}, "decimal places"),
    ("product", {"name": "p", "price": "12345678901.5"}, "digits"),
    ("product", {"name": "p", "note": "n" * 101}, "101 characters"),
]


PRODUCT = {
    "name": "p",
    "quantity": 1,
    "price": "1.00",
    "release_date": None,
    "published_at": None,
    "is_active": True,
    "note": None,
    "external_uuid": str(uuid.UUID(int=1)),
}
"""What the master of `product` sends (ProductRef's CQRS_MAPPING needs every key)."""


def _fields(cqrs_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {**PRODUCT, **fields} if cqrs_id == "product" else fields


def _pk(cqrs_id: str) -> Any:
    return str(uuid.UUID(int=1)) if cqrs_id == "voucher" else 1


@pytest.mark.django_db
@pytest.mark.parametrize(("cqrs_id", "fields", "why"), BAD_FIELDS, ids=lambda v: repr(v)[:40])
def test_values_that_do_not_fit_their_field_are_rejected(
    bulk: bool, cqrs_id: str, fields: dict[str, Any], why: str
) -> None:
    outcomes = apply(payload(cqrs_id, data(_pk(cqrs_id), 0, 0, **_fields(cqrs_id, fields))))
    assert kinds(outcomes) == ["dead"]
    assert why in outcomes[0].reason, outcomes[0].reason
    model = {"item": Item, "mapped_item": MappedItem, "voucher": VoucherRef}.get(
        cqrs_id, ProductRef
    )
    assert not model.objects.exists()


@pytest.mark.django_db
def test_lossless_conversions_are_kept_as_django_cqrs_made_them(bulk: bool) -> None:
    outcomes = apply(
        payload("item", data(1, 0, 0, name=5)),
        payload("mapped_item", data(1, 0, 0, name="m", quantity="7")),
        payload("mapped_item", data(2, 0, 0, name="m", quantity=3.0)),
        payload("product", data(1, 0, 0, **{**PRODUCT, "price": "1.50"})),
        payload("product", data(2, 0, 0, **{**PRODUCT, "price": 0.1})),
    )
    assert kinds(outcomes) == ["applied"] * 5
    assert Item.objects.get(pk=1).name == "5"
    assert sorted(MappedItem.objects.values_list("qty", flat=True)) == [3, 7]
    assert sorted(ProductRef.objects.values_list("price", flat=True)) == [
        Decimal("0.10"),
        Decimal("1.50"),
    ]


@pytest.mark.django_db
def test_public_methods_still_log_and_return_none_for_bad_data() -> None:
    """Called directly (not by the consumer), 3.x's contract: logged, None."""
    assert Item.cqrs_save(data(1, 0, 0, name=LONG)) is None
    assert not Item.objects.exists()


# -- item 3: permanent failures are dead-lettered at once, once in the log ---------------------


@pytest.mark.django_db
@pytest.mark.skipif(not ON_POSTGRESQL, reason="PostgreSQL refuses NUL characters in text")
def test_database_data_error_is_dead_at_once_and_the_rest_applies(
    bulk: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "django-cqrs")
    outcomes = apply(
        payload("item", data(1, 0, 0, name="a")),
        payload("item", data(2, 0, 0, name="nul\x00byte")),
        payload("item", data(3, 0, 0, name="c")),
    )
    assert kinds(outcomes) == ["applied", "dead", "applied"]
    assert "DataError" in outcomes[1].reason
    assert sorted(Item.objects.values_list("pk", flat=True)) == [1, 3]
    records = cqrs_records(caplog)
    assert all(r.exc_info is None for r in records)
    # (bulk) one line saying the batch went one by one; the dead letter itself is logged
    # once by `cqrs_consume`, not here
    assert len(records) == (1 if bulk else 0), [r.getMessage() for r in records]


@pytest.mark.django_db
def test_data_error_is_dead_at_once_even_when_the_model_retries_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Item, "should_retry_cqrs", staticmethod(lambda retry, exc=None: True))
    outcomes = apply(payload("item", data(1, 0, 0, name=LONG)))
    assert kinds(outcomes) == ["dead"]


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor == "mysql", reason="MySQL commits DDL at once")
def test_missing_table_is_dead_at_once_with_the_fix_and_one_traceback(
    bulk: bool, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deployment problem: retrying every message would only burn its retries."""
    quote = connection.ops.quote_name
    table, moved = quote(Item._meta.db_table), quote("gone_item")
    with connection.cursor() as cursor:  # rolled back with the test's transaction
        cursor.execute(f"ALTER TABLE {table} RENAME TO {moved}")
    caplog.set_level(logging.WARNING, "django-cqrs")
    monkeypatch.setattr(errors, "_repeats", errors.RepeatFilter())
    outcomes = apply(*(payload("item", data(n, 0, 0, name=f"n{n}")) for n in range(1, 6)))
    assert kinds(outcomes) == ["dead"] * 5
    assert all("migrate" in outcome.reason for outcome in outcomes)
    records = cqrs_records(caplog)
    assert sum(r.exc_info is not None for r in records) == 1
    assert len(records) <= 5 + 1  # one per message, plus the bulk fallback


@pytest.mark.django_db
def test_unique_clash_is_still_retried() -> None:
    """Not permanent: a later event can move the other row off the value."""
    outcomes = apply(
        payload("item", data(1, 0, 0, name="a", code="same")),
        payload("item", data(2, 0, 0, name="b", code="same")),
    )
    assert kinds(outcomes) == ["applied", "retry"]


def test_classification() -> None:
    kind = errors.classify
    assert kind(BadData("x")) is errors.Kind.BAD_MESSAGE
    assert kind(DataError("value too long")) is errors.Kind.BAD_MESSAGE
    assert kind(IntegrityError("NOT NULL constraint failed: t.c")) is errors.Kind.BAD_MESSAGE
    assert kind(IntegrityError("UNIQUE constraint failed: t.c")) is errors.Kind.TRANSIENT
    assert kind(OperationalError("no such table: t")) is errors.Kind.DEPLOYMENT
    assert kind(OperationalError("database is locked")) is errors.Kind.TRANSIENT
    assert kind(OperationalError(1054, "Unknown column 'x'")) is errors.Kind.DEPLOYMENT
    assert kind(DataError(1406, "Data too long")) is errors.Kind.BAD_MESSAGE
    assert kind(RuntimeError("hook")) is errors.Kind.UNKNOWN
    assert kind(None) is errors.Kind.UNKNOWN
    assert Item.should_retry_cqrs(0, DataError("x")) is False
    assert Item.should_retry_cqrs(0, OperationalError("no such table: t")) is False
    assert Item.should_retry_cqrs(0, OperationalError("deadlock detected")) is True


def test_repeat_filter_reports_once_per_window_then_the_count() -> None:
    now = [0.0]
    repeats = errors.RepeatFilter(window=60, clock=lambda: now[0])
    assert repeats.report("a") == 0
    assert [repeats.report("a") for _ in range(5)] == [None] * 5
    assert repeats.report("b") == 0
    now[0] = 61
    assert repeats.report("a") == 5
    assert repeats.report("a") is None


def test_error_key_ignores_values_and_numbers() -> None:
    one = DataError('value too long for type character varying(100) near "abc" at 12')
    two = DataError('value too long for type character varying(100) near "xyz" at 99')
    assert errors.error_key(Item, one) == errors.error_key(Item, two)


# -- end to end: real RabbitMQ, real cqrs_consume ----------------------------------------------

RABBIT_HOST = os.environ.get("CQRS_TEST_RABBITMQ_HOST", "127.0.0.1")
RABBIT_PORT = int(os.environ.get("CQRS_TEST_RABBITMQ_PORT", "5672"))
WAIT = 90.0
"""Hang guard for the consumer to catch up (not a speed assertion)."""


@pytest.fixture(scope="module")
def vhost() -> Iterator[str]:
    from cqrs_rabbitmq.testing import required_vhost

    with required_vhost("cqrs_safety", RABBIT_HOST, RABBIT_PORT) as name:
        yield name


E2E_BAD: list[tuple[str, dict[str, Any], SignalType]] = [
    ("item", data(101, 0, 0, name=LONG), SignalType.SAVE),
    ("item", data(102, 0, 0, name={"a": 1}), SignalType.SAVE),
    (
        "item",
        {"id": 103, "cqrs_revision": 3.9, "cqrs_updated": str(at(0)), "name": "r"},
        SignalType.SAVE,
    ),
    (
        "item",
        {"id": 104, "cqrs_revision": -1, "cqrs_updated": str(at(0)), "name": "r"},
        SignalType.SAVE,
    ),
    (
        "item",
        {"id": 105, "cqrs_revision": "2", "cqrs_updated": str(at(0)), "name": "r"},
        SignalType.SAVE,
    ),
    ("mapped_item", data(106, 0, 0, name="m", quantity=2.5), SignalType.SAVE),
    ("mapped_item", data(107, 0, 0, name="m", quantity=2**40), SignalType.SAVE),
    (
        "item",
        {"id": "not a key", "cqrs_revision": 1, "cqrs_updated": str(at(1))},
        SignalType.DELETE,
    ),
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.broker("rabbitmq")
@pytest.mark.timeout(240)
def test_bad_messages_among_good_ones_through_rabbitmq(vhost: str, tmp_path: Path) -> None:
    from cqrs_rabbitmq import RabbitMQTransport

    tag = uuid.uuid4().hex[:10]
    url = f"amqp://guest:guest@{RABBIT_HOST}:{RABBIT_PORT}/{quote(vhost, safe='')}"
    queue, exchange = f"safety_{tag}", f"cqrs_{tag}"
    extra = {
        "exchange": exchange,
        "replica": {"batch_size": 20, "batch_timeout": 0.3, "CQRS_RETRY_DELAY": 0.2},
    }
    env = {
        "CQRS_TEST_TRANSPORT": "rabbitmq",
        "CQRS_TEST_URL": url,
        "CQRS_TEST_QUEUE": queue,
        "CQRS_TEST_SETTINGS": json.dumps(extra),
    }
    if connection.vendor == "sqlite" and django.VERSION >= (5, 1):
        env["CQRS_TEST_SQLITE_TRANSACTION_MODE"] = "IMMEDIATE"
    consumer = ConsumeProcess("--cqrs-id", "item", "mapped_item", env=env)
    transport = RabbitMQTransport({"url": url, "exchange": exchange, "queue": queue})
    try:
        consumer.wait_for(r"worker \d+ ready for ")
        good = [payload("item", data(n, 0, n, name=f"good {n}")) for n in range(1, 41)]
        good += [
            payload("mapped_item", data(n, 0, n, name=f"m{n}", quantity=n)) for n in range(1, 11)
        ]
        bad = [payload(cqrs_id, body, signal) for cqrs_id, body, signal in E2E_BAD]
        if ON_POSTGRESQL:  # refused by the database itself, in the bulk statement
            bad.append(payload("item", data(108, 0, 0, name="nul\x00")))
        mixed = good[:20] + bad[:4] + good[20:35] + bad[4:] + good[35:]
        transport.produce_many(mixed)
        deadline = time.monotonic() + WAIT
        letters: list[Any] = []
        while time.monotonic() < deadline:
            letters = transport.dead_letters()
            if (
                len(letters) >= len(bad)
                and Item.objects.count() == 40
                and MappedItem.objects.count() == 10
            ):
                break
            time.sleep(0.3)
        assert consumer.stop() == 0
    finally:
        consumer.kill()
        transport.close()
    # good rows applied exactly, nothing truncated or coerced
    assert sorted(Item.objects.values_list("pk", "name")) == [
        (n, f"good {n}") for n in range(1, 41)
    ], consumer.text
    assert sorted(MappedItem.objects.values_list("pk", "qty")) == [(n, n) for n in range(1, 11)]
    # every bad message in the dead letters, once, with its reason
    assert len(letters) == len(bad), consumer.text
    sent = sorted(json.dumps(p.instance_data, sort_keys=True, default=str) for p in bad)
    dead = sorted(
        json.dumps(letter.payload.instance_data, sort_keys=True, default=str) for letter in letters
    )
    assert dead == sent
    assert all(letter.reason.startswith("bad data, not retried") for letter in letters), [
        letter.reason for letter in letters
    ]
    # the log: one line per bad message (it names the message and the reason), no traceback;
    # on PostgreSQL one more for the batch the NUL character sent one by one
    log = [line for line in consumer.output if not re.search(r"cqrs_consume: ", line)]
    assert not any("Traceback" in line for line in log), consumer.text
    assert len([line for line in log if " dead-lettered " in line]) == len(bad), consumer.text
    assert len(log) <= len(bad) + (1 if ON_POSTGRESQL else 0), consumer.text
    per_message = len(log) / len(bad)
    print(
        f"\nbad inputs {len(bad)}, lost 0, corrupted 0, log lines per bad message {per_message:.2f}"
    )


# -- property: whatever the delivery, the replica ends at the master's newest state ------------

GOOD_CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
"""What a master on any database can hold (PostgreSQL text has no NUL, JSON no surrogates)."""
GOOD_NAMES = st.text(GOOD_CHARS, max_size=100)
BAD_NAMES = st.one_of(
    st.text(GOOD_CHARS, min_size=101, max_size=130),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.lists(st.integers(), max_size=2),
)
BAD_REVISION_VALUES = st.one_of(
    st.integers(max_value=-1),
    st.integers(min_value=REVISION_MAX + 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=4),
    st.booleans(),
)
KEYS = range(1, 5)


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[list[TransportPayload]], dict[int, Any], int]:
    """Master histories of a few keys, delivered with duplicates, SYNCs, bad messages, shuffled
    and cut into batches. Returns the batches, the master's newest state, the bad count."""
    clock = 0
    newest: dict[int, Any] = {}
    events: list[TransportPayload] = []
    for pk in KEYS:
        names = draw(st.lists(GOOD_NAMES, min_size=1, max_size=4))
        for revision, name in enumerate(names):
            clock += 1
            events.append(payload("item", data(pk, revision, clock, name=name)))
        newest[pk] = (names[-1], len(names) - 1)
        if draw(st.booleans()):
            clock += 1
            events.append(payload("item", data(pk, len(names), clock), SignalType.DELETE))
            newest[pk] = None
        elif draw(st.booleans()):  # a SYNC of the current state
            last = data(pk, len(names) - 1, clock, name=names[-1])
            events.append(payload("item", last, SignalType.SYNC, queue="replica"))
    events += draw(st.lists(st.sampled_from(events), max_size=6))  # duplicates
    bad: list[TransportPayload] = []
    for _ in range(draw(st.integers(0, 4))):
        pk = draw(st.sampled_from(list(KEYS)))
        if draw(st.booleans()):
            body = data(pk, draw(st.integers(0, 6)), 0, name=draw(BAD_NAMES))
        else:
            body = data(pk, 0, 0, name="r")
            body["cqrs_revision"] = draw(BAD_REVISION_VALUES)
        bad.append(payload("item", body))
    delivered = draw(st.permutations(events + bad))
    batches, start = [], 0
    while start < len(delivered):
        size = draw(st.integers(1, 12))
        batches.append(delivered[start : start + size])
        start += size
    return batches, newest, len(bad)


@pytest.mark.django_db
@hypothesis.settings(
    max_examples=40,
    deadline=None,
    # too_slow: input generation is CPU work that a busy CI machine can stretch past the limit.
    suppress_health_check=[
        hypothesis.HealthCheck.function_scoped_fixture,
        hypothesis.HealthCheck.too_slow,
    ],
)
@hypothesis.given(case=deliveries(), bulk_apply=st.booleans())
def test_any_delivery_ends_at_the_masters_newest_state(
    case: tuple[list[list[TransportPayload]], dict[int, Any], int],
    bulk_apply: bool,
    memory_cqrs: Any,
    settings: Any,
) -> None:
    from cqrs_core import codec
    from cqrs_core.messages import Inbound

    batches, newest, bad_count = case
    Item.objects.all().delete()
    Tombstone.objects.all().delete()
    settings.CQRS = {
        **settings.CQRS,
        "replica": {**settings.CQRS["replica"], "CQRS_BULK_APPLY": bulk_apply},
    }
    handler = make_handler()
    dead: list[str] = []
    for batch in batches:
        messages = [Inbound(codec.encode(p), queue=p.queue) for p in batch]
        for settled in memory_cqrs.dispatch(handler, messages, cqrs_ids=None):
            kind = settled.outcome.kind.value
            assert kind in ("applied", "dead"), settled.outcome
            if kind == "dead":
                assert settled.outcome.reason.startswith("bad data, not retried")
                dead.append(settled.outcome.reason)
    assert len(dead) == bad_count  # every bad message rejected, no good one
    stored = {
        pk: (name, revision)
        for pk, name, revision in Item.objects.values_list("pk", "name", "cqrs_revision")
    }
    assert stored == {pk: state for pk, state in newest.items() if state is not None}

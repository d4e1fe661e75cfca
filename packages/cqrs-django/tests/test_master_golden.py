"""Our master's message bodies against the captures of upstream django-cqrs 3.1.0.

The same actions with the same input values are replayed on models of the same shape. Bodies
must be canonical (compact ASCII JSON, `/` escaped) and equal to the golden ones once the volatile
values (`cqrs_updated`, `expires`) are checked for format and masked, our CQRS_IDs are mapped to
the golden ones, and `previous_data` is compared as a mapping (its order is not stable upstream).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cqrs_testproject.master_app.models import Customer, Job, Order, Product, Ticket, Voucher
from cqrs_testproject.master_app.testing import use_recording

from cqrs_core import codec

# Captures of upstream django-cqrs 3.1.0, kept with cqrs-core's tests (one copy in the repo).
GOLDEN = (
    Path(__file__).resolve().parents[2] / "cqrs-core" / "tests" / "golden" / "upstream-3.1.0.jsonl"
)
IDS = {
    "product": "golden_product",
    "ticket": "golden_ticket",
    "voucher": "golden_voucher",
    "order": "golden_order",
    "job": "golden_failing",
}
UPDATED_RE = re.compile(r"\A\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}\+00:00\Z")
EXPIRES_RE = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00\Z")
PLUS_ONE = dt.timezone(dt.timedelta(hours=1))
UTC = dt.timezone.utc

pytestmark = pytest.mark.django_db(transaction=True, reset_sequences=True)


def golden(case: str) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in GOLDEN.read_text().splitlines() if line.strip()]
    found = [r for r in rows if r["case"] == case and r["transport"] == "pika"]
    assert found, case
    return found


def normalized(body: str, *, rename: bool) -> str:
    """Check the volatile values' format, mask them, map CQRS_IDs, sort previous_data."""
    assert body == codec.dumps(json.loads(body)), "body is not in canonical wire form"
    data = json.loads(body)
    if rename:
        ours = data["cqrs_id"]
        data["cqrs_id"] = IDS[ours]
        data["correlation_id"] = data["correlation_id"].replace(f":{ours}:", f":{IDS[ours]}:")
    assert UPDATED_RE.match(data["instance_data"]["cqrs_updated"]), data["instance_data"]
    data["instance_data"]["cqrs_updated"] = "<updated>"
    assert EXPIRES_RE.match(data["expires"]), data["expires"]
    data["expires"] = "<expires>"
    if data["previous_data"] is not None:
        data["previous_data"] = dict(sorted(data["previous_data"].items()))
    return codec.dumps(data)


def assert_matches(sent: list[Any], case: str) -> None:
    expected = golden(case)
    assert len(sent) == len(expected)
    for ours, theirs in zip(sent, expected):
        assert normalized(ours.body.decode("ascii"), rename=True) == normalized(
            theirs["body"], rename=False
        )
        key = ours.routing_key
        for mine, gold in IDS.items():
            key = re.sub(rf"(^|\.){mine}$", rf"\g<1>{gold}", key)
        assert key == theirs["routing_key"]


@pytest.fixture
def recorder(settings: Any) -> Any:
    yield from use_recording(
        settings,
        correlation_function="cqrs_testproject.master_app.cqrs_hooks.golden_correlation",
        meta_function="cqrs_testproject.master_app.cqrs_hooks.golden_meta",
    )


def _create_product() -> Product:
    return Product.objects.create(
        name='Café "Grüße" a/b \\ ☃ 😀 <&>',
        quantity=7,
        price=Decimal("1234.50"),
        release_date=dt.date(2026, 12, 24),
        published_at=dt.datetime(2026, 11, 27, 10, 30, 0, 123456, tzinfo=PLUS_ONE),
        is_active=True,
        note=None,
        external_uuid=uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e"),
    )


def _take(recorder: Any) -> list[Any]:
    sent = recorder.sent()
    recorder.clear()
    return sent


def test_product_lifecycle_matches_golden(recorder: Any) -> None:
    """save_create, save_update, sync (broadcast and directed), delete: same bodies as upstream."""
    product = _create_product()
    assert_matches(_take(recorder), "save_create")

    product.name = "Widget v2/updated"
    product.release_date = dt.date(2027, 1, 15)
    product.price = Decimal("999.99")
    product.published_at = dt.datetime(2026, 12, 1, tzinfo=UTC)
    product.is_active = False
    product.note = "now with a note"
    product.save()
    assert product.cqrs_revision == 1
    assert_matches(_take(recorder), "save_update")

    assert Product.objects.get(pk=1).cqrs_sync() is True
    assert_matches(_take(recorder), "sync_broadcast")
    assert Product.objects.get(pk=1).cqrs_sync(queue="golden_replica") is True
    assert_matches(_take(recorder), "sync_directed")

    Product.objects.get(pk=1).delete()
    assert_matches(_take(recorder), "delete")


def test_bulk_operations_match_golden(recorder: Any) -> None:
    """bulk_create and bulk_update send one SAVE per row, like upstream."""
    a = Product(
        name="Bulk A",
        quantity=1,
        price=Decimal("0.10"),
        release_date=dt.date(2026, 1, 2),
        published_at=dt.datetime(2026, 11, 27, 10, 0, 0, 500000, tzinfo=PLUS_ONE),
        is_active=True,
        note=None,
        external_uuid=uuid.UUID("11111111-2222-4333-8444-555555555555"),
    )
    b = Product(
        name="Bulk B",
        quantity=2,
        price=Decimal(5),
        release_date=dt.date(2026, 1, 3),
        published_at=dt.datetime(2026, 11, 27, 11, 0, tzinfo=UTC),
        is_active=False,
        note="b",
        external_uuid=uuid.UUID("66666666-7777-4888-9999-aaaaaaaaaaaa"),
    )
    # The golden run had created product 1 first; start the sequence at 2 the same way.
    Product.objects.create(name="placeholder")
    Product.objects.filter(pk=1).delete()
    recorder.clear()

    Product.cqrs.bulk_create([a, b])
    assert_matches(_take(recorder), "bulk_create")

    count = Product.cqrs.bulk_update(
        Product.objects.filter(pk__in=[a.pk, b.pk]), quantity=99, name="Bulk renamed"
    )
    assert count == 2
    sent = _take(recorder)
    assert_matches(sent, "bulk_update")
    assert (
        sent[0].data["instance_data"]["cqrs_updated"]
        == sent[1].data["instance_data"]["cqrs_updated"]
    )


def test_ticket_custom_delete_matches_golden(recorder: Any) -> None:
    ticket = Ticket.objects.create(subject="Printer / jam ü")
    assert_matches(_take(recorder), "save_create_ticket")
    ticket.delete()
    assert_matches(_take(recorder), "delete_custom")


def test_uuid_pk_matches_golden_and_deletes(recorder: Any) -> None:
    """UUID pk: string instance_pk; DELETE (which upstream failed to encode) sends it as a string."""
    pk = uuid.UUID("3b241101-e2bb-4255-8caf-4136c566a962")
    voucher = Voucher.objects.create(id=pk, code="VOUCHER-ü/1", value=50)
    assert_matches(_take(recorder), "uuid_pk_save")

    voucher.delete()
    [sent] = _take(recorder)
    body = sent.data
    assert body["signal_type"] == "DELETE"
    assert body["instance_pk"] == str(pk)
    assert list(body["instance_data"]) == ["id", "cqrs_revision", "cqrs_updated"]
    assert body["instance_data"]["id"] == str(pk)
    assert body["instance_data"]["cqrs_revision"] == 1


def test_serializer_model_matches_golden(recorder: Any) -> None:
    customer = Customer.objects.create(name="Zoë Müller", email="zoe@example.com")
    Order.objects.create(
        number="ORD-0001",
        total=Decimal("249.90"),
        customer=customer,
        created_at=dt.datetime(2026, 11, 27, 9, 0, tzinfo=UTC),
    )
    assert_matches(_take(recorder), "serializer_save")


def test_plain_model_matches_golden(recorder: Any) -> None:
    Job.objects.create(payload="will fail on the replica")
    assert_matches(_take(recorder), "failing_original_save")

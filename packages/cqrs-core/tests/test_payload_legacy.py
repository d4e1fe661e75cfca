"""TransportPayload as django-cqrs 3.x code uses it: `pk`, `retries = n`, the settings TTL."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import pickle
from collections.abc import Iterator
from typing import Any

import pytest

from cqrs_core import codec
from cqrs_core.constants import DEFAULT_MESSAGE_TTL
from cqrs_core.payload import TransportPayload, set_default_ttl

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 27, 8, 0, 0, tzinfo=UTC)


def make(**overrides: Any) -> TransportPayload:
    fields: dict[str, Any] = {
        "signal_type": "SAVE",
        "cqrs_id": "product",
        "instance_data": {"id": 5},
        "instance_pk": 5,
    }
    fields.update(overrides)
    return TransportPayload(**fields)


@pytest.fixture
def restore_default_ttl() -> Iterator[None]:
    """Put back the provider found (dj_cqrs registers one when Django runs these tests too)."""
    from cqrs_core import payload

    found = payload._default_ttl
    yield
    set_default_ttl(found)


def test_pk_is_instance_pk() -> None:
    assert make(instance_pk="a-1").pk == "a-1"


def test_retries_can_be_set_in_place_and_is_sent() -> None:
    payload = make()
    payload.retries = 4
    assert payload.retries == 4
    assert codec.decode(codec.encode(payload)).retries == 4


@pytest.mark.parametrize("bad", [-1, "2", 1.5, True, None])
def test_retries_must_stay_a_non_negative_integer(bad: Any) -> None:
    payload = make(retries=2)
    with pytest.raises(ValueError, match="retries"):
        payload.retries = bad
    assert payload.retries == 2


@pytest.mark.parametrize("field", ["signal_type", "cqrs_id", "instance_data", "expires", "meta"])
def test_other_fields_stay_read_only(field: str) -> None:
    payload = make()
    with pytest.raises(dataclasses.FrozenInstanceError, match="dataclasses.replace"):
        setattr(payload, field, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        delattr(payload, field)


def test_copies_and_replace_keep_working() -> None:
    payload = make(retries=1, meta={"a": 1})
    for other in (copy.deepcopy(payload), copy.copy(payload), pickle.loads(pickle.dumps(payload))):
        assert other == payload and other is not payload
        other.retries = 7
        assert payload.retries == 1
    assert dataclasses.replace(payload, retries=3).retries == 3
    assert payload.retried().retries == 2


def test_from_message_asks_the_registered_ttl_provider(restore_default_ttl: None) -> None:
    dct = {"signal_type": "SAVE", "cqrs_id": "product", "instance_data": {"id": 1}}
    set_default_ttl(lambda: 60)
    assert TransportPayload.from_message(dct, now=NOW).expires == NOW + dt.timedelta(seconds=60)
    set_default_ttl(lambda: None)
    assert TransportPayload.from_message(dct, now=NOW).expires is None
    # an explicit default_ttl (transports pass their own setting) wins over the provider
    got = TransportPayload.from_message(dct, now=NOW, default_ttl=5)
    assert got.expires == NOW + dt.timedelta(seconds=5)
    set_default_ttl(None)
    got = TransportPayload.from_message(dct, now=NOW)
    assert got.expires == NOW + dt.timedelta(seconds=DEFAULT_MESSAGE_TTL)


def test_transport_code_can_tag_a_payload() -> None:
    """3.x transports mark payloads they republish (`payload.is_requeue = True`)."""
    payload = make()
    payload.is_requeue = True  # type: ignore[attr-defined]
    assert payload.is_requeue is True  # type: ignore[attr-defined]
    assert codec.decode(codec.encode(payload)) == payload

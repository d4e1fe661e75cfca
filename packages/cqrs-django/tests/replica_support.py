"""Helpers shared by the replica tests (payload builders, a memory-transport environment)."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any

import pytest

from cqrs_core.constants import SignalType
from cqrs_core.payload import TransportPayload
from cqrs_core.transports.memory import MemoryBroker, MemoryTransport

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)


def at(seconds: float) -> datetime.datetime:
    """A master time `seconds` after T0."""
    return T0 + datetime.timedelta(seconds=seconds)


def data(pk: Any, revision: int, seconds: float, **fields: Any) -> dict[str, Any]:
    """`instance_data` as a master sends it (`cqrs_updated` in the wire's string form)."""
    return {"id": pk, "cqrs_revision": revision, "cqrs_updated": str(at(seconds)), **fields}


def payload(
    cqrs_id: str,
    instance_data: dict[str, Any],
    signal: SignalType = SignalType.SAVE,
    **kwargs: Any,
) -> TransportPayload:
    return TransportPayload(
        signal_type=signal,
        cqrs_id=cqrs_id,
        instance_data=instance_data,
        instance_pk=instance_data.get("id"),
        **kwargs,
    )


@pytest.fixture(name="memory_cqrs")
def memory_cqrs_fixture(settings: Any, unique: Any) -> Iterator[MemoryTransport]:
    """Point the project at a fresh memory broker; yield the replica's consuming transport.

    The replica queue is bound to every replica CQRS_ID first, so what the master publishes
    from now on is kept.
    """
    from dj_cqrs import conf
    from dj_cqrs.consumer import resolve_cqrs_ids

    name = unique("replication")
    settings.CQRS = {
        **settings.CQRS,
        "transport": "memory",
        "url": f"memory://{name}",
        "queue": "replica",
        "replica": {"CQRS_MAX_RETRIES": 5, "CQRS_RETRY_DELAY": 0.05},
    }
    conf.reset_transport()
    transport = MemoryTransport(conf.transport_options())
    transport.declare(resolve_cqrs_ids())
    try:
        yield transport
    finally:
        transport.close()
        conf.reset_transport()
        MemoryBroker.drop(name)

"""Faults between master, broker and a real `cqrs_consume`: nothing may be lost.

Every test ends with the replica equal to the master, counts lost rows (must be 0) and the
duplicated applications that `replica_app.TallyRef` logged (a (row, revision) committed more
than once; expected 0 thanks to the replica's revision rules), and prints them in the summary.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import transaction
from e2e_support import (
    Replication,
    TcpProxy,
    differences,
    duplicated_applications,
    kafka_behind_proxy,
    master_state,
    missing,
    replica_state,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.timeout(240)]

ROWS = 300
COMMIT = 50


def in_sync() -> bool:
    return master_state() == replica_state()


def applied() -> int:
    from cqrs_testproject.replica_app.models import ApplyLog

    return ApplyLog.objects.count()


def create_tallies(count: int, *, start: int = 0, fail_times: int = 0) -> list[Any]:
    from cqrs_testproject.master_app.models import Tally

    rows = []
    for first in range(start, start + count, COMMIT):
        with transaction.atomic():
            rows += [
                Tally.objects.create(name=f"tally {n}", value=n, fail_times=fail_times)
                for n in range(first, min(first + COMMIT, start + count))
            ]
    return rows


def update_tallies(rows: list[Any]) -> None:
    for first in range(0, len(rows), COMMIT):
        with transaction.atomic():
            for row in rows[first : first + COMMIT]:
                row.value += 1000
                row.save()


def finish(replication: Replication, test: str) -> None:
    """Wait for the replica, then count and report lost rows and duplicated applications."""
    with contextlib.suppress(AssertionError):
        replication.wait_until(in_sync, "replica == master")
    master, replica = master_state(), replica_state()
    lost = differences(master, replica)
    duplicated = duplicated_applications()
    replication.report(test, lost=sum(lost.values()), duplicated=duplicated, applied=applied())
    assert lost == {}, f"rows lost or different on the replica: {lost}: {missing(master, replica)}"
    assert replication.transport().dead_letters() == []


def test_consumer_sigkilled_mid_batch_then_restarted(fault_replication: Replication) -> None:
    """Creates only: any message lost with the killed consumer is a missing replica row."""
    consumer = fault_replication.consumer()
    create_tallies(ROWS)
    fault_replication.wait_until(lambda: applied() >= 30, "the consumer to be busy")
    consumer.kill()
    assert consumer.process.returncode == -9
    done = applied()
    create_tallies(ROWS // 2, start=ROWS)  # more events pile up while no consumer runs
    fault_replication.consumer()
    finish(fault_replication, "sigkill")
    assert done < applied(), "the restarted consumer applied the rest"
    assert applied() == ROWS + ROWS // 2 + duplicated_applications()
    assert duplicated_applications() == 0


@contextlib.contextmanager
def proxied(replication: Replication) -> Iterator[tuple[Replication, TcpProxy]]:
    """The consumer reaches the broker through a TcpProxy (for Kafka, everyone does)."""
    backend = replication.backend
    if backend.name == "kafka":
        with kafka_behind_proxy(backend) as (behind, proxy):
            replication.backend = behind
            replication.configure_master()
            try:
                yield replication, proxy
            finally:
                replication.stop_consumers()
                replication.backend = backend
                replication.configure_master()
        return
    assert backend.address is not None and backend.proxied is not None
    proxy = TcpProxy(*backend.address)
    try:
        yield replication, proxy
    finally:
        replication.stop_consumers()
        proxy.close()


def test_connection_cut_mid_stream(fault_replication: Replication) -> None:
    """Creates only: a message lost in a cut connection is a missing replica row."""
    with proxied(fault_replication) as (replication, proxy):
        extra = replication.backend.proxied(proxy.port) if replication.backend.proxied else {}
        replication.consumer(**extra)
        create_tallies(ROWS)
        cuts = 0
        for threshold in (30, 120, 210):
            replication.wait_until(
                lambda threshold=threshold: applied() >= threshold or in_sync(),
                f"{threshold} applications",
            )
            if not in_sync():
                proxy.cut()
                cuts += 1
        create_tallies(100, start=ROWS)
        proxy.cut()
        cuts += 1
        finish(replication, f"connection cut x{cuts}")
        assert proxy.connections > 1, "the consumer reconnected through the proxy"
        assert applied() == ROWS + 100 + duplicated_applications()
        assert duplicated_applications() == 0


def test_handler_failing_n_times_then_succeeding(fault_replication: Replication) -> None:
    """Each of the first 20 rows fails twice, then applies; nothing is dead-lettered.

    They are saved before the consumer declared its queue: on AMQP and Redis that publish is
    unroutable, so the events stay in the master's outbox until `cqrs_relay --once` sends them.
    """
    failing = create_tallies(20, fail_times=2)
    fault_replication.consumer()
    create_tallies(80, start=20)
    finish(fault_replication, "failing twice")
    attempts = {
        path.name: len(path.read_text()) for path in fault_replication.attempts_dir.iterdir()
    }
    assert attempts == {f"{row.pk}-0": 3 for row in failing}
    assert duplicated_applications() == 0


def test_poison_messages_are_dead_lettered_and_the_rest_applies(
    fault_replication: Replication,
) -> None:
    from cqrs_core.messages import Outgoing

    fault_replication.consumer()
    create_tallies(50)
    transport = fault_replication.transport()
    poison = [
        b"\xff not json",
        b'{"signal_type":"SAVE","cqrs_id":"tally","instance_data":"wrong type"}',
    ]
    transport._publish([Outgoing(body=body, cqrs_id="tally") for body in poison])
    create_tallies(50, start=50)
    fault_replication.wait_until(
        lambda: len(transport.dead_letters()) >= len(poison) and in_sync(),
        "poison in the dead letters",
    )
    letters = transport.dead_letters()
    assert sorted(letter.body for letter in letters) == sorted(poison)
    assert all(letter.reason for letter in letters)
    assert transport.purge_dead_letters() == len(poison)
    finish(fault_replication, "poison")


def test_duplicates_are_applied_once(fault_replication: Replication) -> None:
    from cqrs_core.constants import SignalType
    from cqrs_core.payload import TransportPayload

    fault_replication.consumer()
    rows = create_tallies(100)
    update_tallies(rows[:50])
    fault_replication.wait_until(in_sync, "replica == master")
    before = applied()

    def save(row: Any) -> TransportPayload:
        row.refresh_from_db()
        data = row.to_cqrs_dict()
        return TransportPayload(SignalType.SAVE, "tally", data, row.pk)

    duplicates = [save(row) for row in rows] * 2
    fault_replication.transport().produce_many(duplicates)
    update_tallies(rows)  # behind the duplicates on every row's queue/partition
    finish(fault_replication, f"{len(duplicates)} duplicates")
    assert applied() == before + len(rows)
    assert duplicated_applications() == 0

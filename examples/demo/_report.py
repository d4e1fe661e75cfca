"""What the demo prints, read straight from the two SQLite databases (no Django needed here)."""

from __future__ import annotations

import dataclasses
import sqlite3
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import IO

SIGNALS = ("SAVE", "DELETE", "SYNC")


@dataclasses.dataclass(frozen=True)
class Row:
    """A product as both sides should agree on it (the replica's mapping undone)."""

    sku: str
    name: str
    category_id: int
    category: str
    price: Decimal
    stock: int
    revision: int
    updated: str


@contextmanager
def _db(path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        yield connection
    finally:
        connection.close()


def _price(value: object) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"))


def master_rows(path: Path) -> dict[int, Row]:
    with _db(path) as db:
        found = db.execute(
            "SELECT p.id, p.sku, p.name, c.id, c.name, p.price, p.stock, p.cqrs_revision,"
            " p.cqrs_updated FROM shop_product p JOIN shop_category c ON c.id = p.category_id"
        ).fetchall()
    return {r[0]: Row(r[1], r[2], r[3], r[4], _price(r[5]), r[6], r[7], str(r[8])) for r in found}


def replica_rows(path: Path) -> dict[int, Row]:
    with _db(path) as db:
        found = db.execute(
            "SELECT id, sku, title, category_id, category_name, price, stock, cqrs_revision,"
            " cqrs_updated FROM storefront_product"
        ).fetchall()
    return {r[0]: Row(r[1], r[2], r[3], r[4], _price(r[5]), r[6], r[7], str(r[8])) for r in found}


def previous_prices(path: Path) -> dict[int, Decimal]:
    with _db(path) as db:
        found = db.execute(
            "SELECT id, previous_price FROM storefront_product WHERE previous_price IS NOT NULL"
        ).fetchall()
    return {pk: _price(value) for pk, value in found}


def differences(master: dict[int, Row], replica: dict[int, Row]) -> list[str]:
    """Every way the replica differs from the master; empty when they match."""
    found = []
    for pk in sorted(master.keys() | replica.keys()):
        mine, theirs = master.get(pk), replica.get(pk)
        if theirs is None:
            found.append(f"product {pk}: missing on the replica")
        elif mine is None:
            found.append(f"product {pk}: on the replica but deleted on the master")
        elif mine != theirs:
            fields = [
                f"{f.name} {getattr(mine, f.name)!r} != {getattr(theirs, f.name)!r}"
                for f in dataclasses.fields(Row)
                if getattr(mine, f.name) != getattr(theirs, f.name)
            ]
            found.append(f"product {pk}: " + "; ".join(fields))
    return found


DROPPED = "not sent:%"
"""`last_error` of an outbox row settled without a message (`dj_cqrs.outbox.rows.DROPPED_NOTE`):
a SAVE whose product was deleted before the SAVE went out; the DELETE tells the replica."""


def _outbox(path: Path) -> list[tuple[str, int, int, int]]:
    """(signal type, events, events settled without a message, events not sent yet)."""
    with _db(path) as db:
        found = db.execute(
            "SELECT signal_type, COUNT(*), SUM(COALESCE(last_error LIKE ?, 0)),"
            " SUM(sent_at IS NULL) FROM dj_cqrs_outboxevent GROUP BY signal_type",
            (DROPPED,),
        ).fetchall()
    return [(kind, total, dropped or 0, pending or 0) for kind, total, dropped, pending in found]


def published(path: Path) -> tuple[dict[str, int], int]:
    """Messages per type from the master's outbox, and how many events are not sent yet."""
    found = _outbox(path)
    return {kind: total - gone for kind, total, gone, _ in found}, sum(p for *_, p in found)


def dropped(path: Path) -> dict[str, int]:
    """Events per type that were settled without a message (see `DROPPED`)."""
    return {kind: gone for kind, _, gone, _ in _outbox(path) if gone}


def applied(path: Path) -> list[tuple[str, float | None]]:
    """(signal type, lag in seconds) of every event the replica applied."""
    with _db(path) as db:
        found = db.execute(
            "SELECT signal_type, applied_at - written_at FROM storefront_applylog ORDER BY id"
        ).fetchall()
    return [(kind, lag) for kind, lag in found]


def tombstones(path: Path) -> list[tuple[str, int | None]]:
    with _db(path) as db:
        found = db.execute(
            "SELECT instance_pk, cqrs_revision FROM dj_cqrs_tombstone WHERE cqrs_id = 'product'"
        ).fetchall()
    return [(pk, revision) for pk, revision in found]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:7.1f} ms"


def print_events(out: IO[str], master_db: Path, replica_db: Path) -> None:
    sent, _ = published(master_db)
    done = applied(replica_db)
    out.write("\nEvents per type        published by master   applied by replica\n")
    for kind in SIGNALS:
        count = sum(1 for k, _ in done if k == kind)
        out.write(f"  {kind:<20} {sent.get(kind, 0):>10}   {count:>18}\n")
    out.write(f"  {'total':<20} {sum(sent.values()):>10}   {len(done):>18}\n")
    for kind, count in sorted(dropped(master_db).items()):
        out.write(
            f"  ({count} {kind} not sent: the product was deleted before it went out; "
            "its DELETE told the replica)\n"
        )


def print_lag(out: IO[str], replica_db: Path) -> None:
    done = [(kind, lag) for kind, lag in applied(replica_db) if lag is not None]
    out.write("\nReplication lag (master write -> replica apply, per event)\n")
    out.write("  type        events     median      worst\n")
    for kind in (*SIGNALS, "all"):
        lags = [lag for k, lag in done if kind in ("all", k)]
        if lags:
            out.write(
                f"  {kind:<10} {len(lags):>7} {_ms(statistics.median(lags))} {_ms(max(lags))}\n"
            )


def print_rows(out: IO[str], master_db: Path, replica_db: Path) -> None:
    master, replica = master_rows(master_db), replica_rows(replica_db)
    was = previous_prices(replica_db)
    out.write("\nRows, read from both databases\n")
    out.write(f"  {'':3} {'master: shop_product':<51} | replica: storefront_product\n")
    out.write(
        f"  {'id':>3} {'name':<20} {'category':<13} {'price':>6} {'stock':>5} {'rev':>3} | "
        f"{'title':<20} {'category':<13} {'price':>6} {'(was)':>7} {'stock':>5} {'rev':>3}\n"
    )
    for pk in sorted(master.keys() | replica.keys()):
        m, r = master.get(pk), replica.get(pk)
        left = (
            f"{m.name[:20]:<20} {m.category[:13]:<13} {m.price:>6} {m.stock:>5} {m.revision:>3}"
            if m
            else f"{'(deleted)':<20} {'':<13} {'':>6} {'':>5} {'':>3}"
        )
        right = (
            f"{r.name[:20]:<20} {r.category[:13]:<13} {r.price:>6} "
            f"{('(' + str(was[pk]) + ')') if pk in was else '':>7} {r.stock:>5} {r.revision:>3}"
            if r
            else "(absent)"
        )
        mark = "" if m == r else "  <-- differs"
        out.write(f"  {pk:>3} {left} | {right}{mark}\n")
    graves = ", ".join(f"id {pk} (revision {rev})" for pk, rev in tombstones(replica_db))
    if graves:
        out.write(f"  replica tombstones of deleted rows: {graves}\n")

"""Walking big tables in batches by primary key (keyset pagination).

`OFFSET/LIMIT` on a table that changes during the walk skips or repeats rows (a row deleted
before the offset shifts every later row back by one). Here each batch is `pk > last pk of the
previous batch ORDER BY pk LIMIT n`: a row present for the whole run is seen exactly once,
whatever is inserted or deleted meanwhile, and every query uses the primary key index.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

from django.db.models import Model, QuerySet

T = TypeVar("T")
M = TypeVar("M", bound=Model)

IN_CHUNK = 500
"""Parameters per `pk__in` query (below SQLite's and every other backend's limit)."""

_START: Any = object()


def _pages(queryset: QuerySet[Any], batch_size: int, pk_of: Any) -> Iterator[list[Any]]:
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    if queryset.query.is_sliced:
        raise ValueError("cannot walk a sliced queryset by primary key")
    ordered = queryset.order_by("pk")
    last = _START
    while True:
        page = ordered if last is _START else ordered.filter(pk__gt=last)
        rows = list(page[:batch_size])
        if not rows:
            return
        # A filter across a multi-valued relation can return one row several times.
        unique: dict[Any, Any] = {}
        for row in rows:
            unique.setdefault(pk_of(row), row)
        yield list(unique.values())
        last = pk_of(rows[-1])
        if len(rows) < batch_size:
            return


def instance_batches(queryset: QuerySet[M], batch_size: int) -> Iterator[list[M]]:
    """Model instances of `queryset` in primary-key order, `batch_size` per list."""
    return _pages(queryset, batch_size, lambda row: row.pk)


def value_batches(
    queryset: QuerySet[Any], fields: Sequence[str], batch_size: int
) -> Iterator[list[tuple[Any, ...]]]:
    """`values_list("pk", *fields)` tuples in primary-key order, `batch_size` per list."""
    return _pages(queryset.values_list("pk", *fields), batch_size, lambda row: row[0])


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most `size` items."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def existing_pks(queryset: QuerySet[Any], pks: Iterable[Any]) -> set[Any]:
    """The subset of `pks` that `queryset` holds (queried `IN_CHUNK` at a time)."""
    found: set[Any] = set()
    for chunk in chunks(pks, IN_CHUNK):
        found.update(queryset.filter(pk__in=chunk).values_list("pk", flat=True))
    return found


def values_by_pk(queryset: QuerySet[Any], pks: Iterable[Any], field: str) -> dict[Any, Any]:
    """`{pk: field value}` for the rows of `queryset` among `pks`."""
    found: dict[Any, Any] = {}
    for chunk in chunks(pks, IN_CHUNK):
        found.update(queryset.filter(pk__in=chunk).order_by().values_list("pk", field))
    return found


def instances_by_pk(queryset: QuerySet[M], pks: Iterable[Any]) -> list[M]:
    """Instances of `queryset` among `pks`, in primary-key order."""
    found: list[M] = []
    for chunk in chunks(pks, IN_CHUNK):
        found.extend(queryset.filter(pk__in=chunk).order_by("pk"))
    found.sort(key=lambda instance: instance.pk)
    return found

"""Apply received payloads to replica models: the handler given to `transport.consume`.

A batch is applied in one transaction per database, each message inside its own savepoint,
so one bad message rolls back alone and the others commit together. If the batch transaction
itself breaks (connection lost, commit failed), nothing of it was committed and the batch is
applied again one transaction per message, which is safe because duplicates are skipped.

Runs of messages of one plain replica model are applied with bulk reads and upserts
(`dj_cqrs.replica.batch`, same rules and final state); set `CQRS['replica']['CQRS_BULK_APPLY']`
to False to apply every message through the model's own methods.

Messages are applied in (CQRS_ID, pk) order (stable, so each row keeps its arrival order):
workers then take row locks in the same order and cannot deadlock each other.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import time
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from django.db import (
    DEFAULT_DB_ALIAS,
    DatabaseError,
    connections,
    router,
    transaction,
)

from cqrs_core.constants import SignalType
from cqrs_core.exceptions import ConfigurationError
from cqrs_core.messages import Handler, Outcome, decides_unlisted_ids
from cqrs_core.payload import TransportPayload
from cqrs_core.transports import BaseTransport
from dj_cqrs.observability import metrics, tracing
from dj_cqrs.registries import ReplicaRegistry
from dj_cqrs.replica import errors
from dj_cqrs.replica.errors import raising_errors
from dj_cqrs.replica.session import consumer_session

logger = logging.getLogger("django-cqrs")


class _FalsyResult(Exception):
    """Raised inside a message's savepoint so that a falsy result rolls it back."""


class _BatchBroken(Exception):
    """The batch transaction can no longer commit; retry message by message."""


def resolve_cqrs_ids(cqrs_ids: Iterable[str] | None = None) -> list[str]:
    """The replica CQRS_IDs to consume: all registered ones by default.

    Raises:
        ConfigurationError: no replica model is registered, or an id is unknown.
    """
    registered = ReplicaRegistry.models
    if not registered:
        raise ConfigurationError(
            "No replica model is registered: define models with ReplicaMixin (or "
            "RawReplicaMixin) and a CQRS_ID in an app listed in INSTALLED_APPS."
        )
    if cqrs_ids is None:
        return sorted(registered)
    wanted = list(dict.fromkeys(cqrs_ids))
    unknown = [cqrs_id for cqrs_id in wanted if cqrs_id not in registered]
    if unknown:
        hints = []
        for cqrs_id in unknown:
            close = difflib.get_close_matches(cqrs_id, list(registered), n=1)
            if close:
                hints.append(f"{cqrs_id!r}: did you mean {close[0]!r}?")
        raise ConfigurationError(  # starts with django-cqrs 3.x's words: scripts grep them
            f"Wrong CQRS ID: {unknown[0]}! "
            f"No replica model has CQRS_ID {', '.join(map(repr, unknown))}. "
            + (" ".join(hints) + " " if hints else "")
            + f"Registered: {', '.join(sorted(registered))}."
        )
    return wanted


def make_handler(cqrs_ids: Collection[str] | None = None) -> Handler:
    """A cqrs-core `Handler` that applies payloads for `cqrs_ids` (None: every replica model)."""
    from dj_cqrs.replica.releases import ReleaseLedger

    allowed = frozenset(cqrs_ids) if cqrs_ids is not None else None
    ledger = ReleaseLedger(allowed) if allowed is not None else None

    last_batch = [time.monotonic()]

    def handler(payloads: Sequence[TransportPayload]) -> list[Outcome]:
        _refresh_connections(idle=time.monotonic() - last_batch[0])
        try:
            outcomes = apply_batch(payloads, allowed=allowed)
        finally:
            last_batch[0] = time.monotonic()
        return outcomes if ledger is None else ledger.bound(payloads, outcomes)

    # It knows every model of the service: it dead-letters ids none has, releases the others.
    measured = metrics.instrument_handler(handler)
    return decides_unlisted_ids(tracing.instrument_handler(measured))  # tracing (issue 16)


def no_model_reason(cqrs_id: str) -> str:
    """Why a message for a CQRS_ID no replica model has is dead-lettered (kept for a redeploy)."""
    registered = ", ".join(sorted(ReplicaRegistry.models)) or "none"
    return (
        f"no replica model has CQRS_ID {cqrs_id!r} in this service: a stale queue binding or "
        f"a removed model (registered: {registered}); deploy the model, then run "
        "`cqrs_dead_letters retry`, or unbind the routing key and purge"
    )


def apply_batch(
    payloads: Sequence[TransportPayload], *, allowed: Collection[str] | None = None
) -> list[Outcome]:
    """Apply `payloads`; one Outcome per payload, in the same order."""
    outcomes: list[Outcome | None] = [None] * len(payloads)
    work: list[tuple[int, TransportPayload, Any]] = []
    for index, payload in enumerate(payloads):
        model = ReplicaRegistry.get_model_by_cqrs_id(payload.cqrs_id)
        if model is None:
            outcomes[index] = Outcome.dead(no_model_reason(payload.cqrs_id))
        elif allowed is not None and payload.cqrs_id not in allowed:
            outcomes[index] = Outcome.release()  # another worker (other --cqrs-id) takes it
        elif _ignored_broadcast_sync(model, payload):
            outcomes[index] = Outcome.skipped("broadcast SYNC ignored (CQRS_ONLY_DIRECT_SYNCS)")
        else:
            work.append((index, payload, model))
    work.sort(key=lambda item: (item[1].cqrs_id, str(item[1].instance_pk)))
    if work:
        for index, outcome in _apply_work(work):
            outcomes[index] = outcome
    return [outcome for outcome in outcomes if outcome is not None]


def _apply_work(work: list[tuple[int, TransportPayload, Any]]) -> list[tuple[int, Outcome]]:
    aliases = sorted({_alias(model) for _, _, model in work})
    try:
        with contextlib.ExitStack() as stack:
            for alias in aliases:
                stack.enter_context(consumer_session(alias))
                stack.enter_context(transaction.atomic(using=alias))
                _set_query_timeout(alias)
            results = _apply_grouped(work)
            broken = [alias for alias in aliases if transaction.get_rollback(using=alias)]
            if broken:
                raise _BatchBroken(f"transaction on {', '.join(broken)} marked for rollback")
        return results
    except (_BatchBroken, DatabaseError) as exc:
        if len(work) == 1 and not isinstance(exc, _BatchBroken):
            return [(work[0][0], _failure(work[0][2], work[0][1], exc))]
        logger.warning(
            "CQRS batch of %d message(s) could not commit (%s); applying them one by one.",
            len(work),
            exc,
        )
    results = []
    for index, payload, model in work:
        alias = _alias(model)
        _recover(alias)
        try:
            with consumer_session(alias), transaction.atomic(using=alias):
                _set_query_timeout(alias)
                outcome = apply_one(payload, model)
                if outcome.acks and transaction.get_rollback(using=alias):
                    outcome = _failure(model, payload, _BatchBroken("transaction was rolled back"))
        except DatabaseError as exc:  # the commit itself failed
            outcome = _failure(model, payload, exc)
        results.append((index, outcome))
    return results


def _apply_grouped(work: list[tuple[int, TransportPayload, Any]]) -> list[tuple[int, Outcome]]:
    """Runs of one model go through the bulk path when the model allows it (see module doc)."""
    from dj_cqrs.replica.batch import supports_bulk

    results: list[tuple[int, Outcome]] = []
    bulk_on = _bulk_enabled()
    start = 0
    while start < len(work):
        model = work[start][2]
        end = start
        while end < len(work) and work[end][2] is model:
            end += 1
        run = work[start:end]
        if bulk_on and supports_bulk(model):
            results.extend(_apply_bulk(model, run))
        else:
            results.extend((index, apply_one(payload, model)) for index, payload, _ in run)
        start = end
    return results


def _apply_bulk(
    model: Any, run: list[tuple[int, TransportPayload, Any]]
) -> list[tuple[int, Outcome]]:
    """One model's messages with bulk reads and writes, inside one savepoint.

    If anything in it fails (a constraint, a lock timeout), the savepoint is rolled back and
    the messages are applied one by one, each in its own savepoint, so that only the bad ones
    fail.
    """
    from dj_cqrs.replica.batch import apply_model_batch

    payloads = [payload for _, payload, _ in run]
    try:
        with transaction.atomic(using=_alias(model)):
            errors = apply_model_batch(model, payloads)
    except Exception as exc:  # noqa: BLE001
        logger.warning(
            "CQRS bulk apply of %d %s message(s) failed (%s: %s); applying them one by one.",
            len(run),
            model.CQRS_ID,
            type(exc).__name__,
            exc,
        )
        return [(index, apply_one(payload, model)) for index, payload, _ in run]
    return [
        (index, Outcome.applied() if error is None else _failure(model, payload, error))
        for (index, payload, _), error in zip(run, errors, strict=True)
    ]


def _bulk_enabled() -> bool:
    from dj_cqrs.conf import replica_settings

    return bool(replica_settings().get("CQRS_BULK_APPLY", True))


def apply_one(payload: TransportPayload, model: Any) -> Outcome:
    """Apply one payload inside a savepoint; failures become RETRY or DEAD by the model's policy."""
    started = time.monotonic()
    try:
        with transaction.atomic(using=_alias(model)):
            result = _call(model, payload)
            if not result:
                raise _FalsyResult()
    except _FalsyResult:
        return _failure(model, payload, None)
    except Exception as exc:  # noqa: BLE001  (one bad message must not fail its batch)
        return _failure(model, payload, exc)
    logger.debug(
        "CQRS %s %s:%s applied in %.1f ms",
        payload.signal_type,
        payload.cqrs_id,
        payload.instance_pk,
        (time.monotonic() - started) * 1000,
    )
    return Outcome.applied()


def _call(model: Any, payload: TransportPayload) -> Any:
    """Call the model's hooks with django-cqrs's arguments (`sync` and `meta` only when set).

    Inside `raising_errors()`, so that bad data and database errors come back as exceptions
    (the reason of the retry or dead letter), not as the None/False of a direct call.
    """
    kwargs: dict[str, Any] = {"meta": payload.meta} if model.CQRS_META else {}
    data = dict(payload.instance_data)
    with raising_errors():
        if payload.signal_type is SignalType.DELETE:
            return model.cqrs_delete(data, **kwargs)
        if payload.signal_type is SignalType.SYNC:
            kwargs["sync"] = True
        previous = dict(payload.previous_data) if payload.previous_data is not None else None
        return model.cqrs_save(data, previous_data=previous, **kwargs)


def _failure(model: Any, payload: TransportPayload, exc: BaseException | None) -> Outcome:
    """Retry or dead-letter a failed message (see `replica.errors.Kind`), logging it once."""
    kind = errors.classify(exc)
    if exc is None:
        reason = f"{model.__name__} returned a falsy result"
        logger.error(
            "CQRS %s %s:%s not applied: %s (retries %d).",
            payload.signal_type,
            payload.cqrs_id,
            payload.instance_pk,
            reason,
            payload.retries,
        )
    else:
        reason = f"{type(exc).__name__}: {exc}"
        what = f"CQRS {payload.signal_type} {payload.cqrs_id}:{payload.instance_pk}"
        errors.log_failure(model, what, payload.retries, exc, kind)
        from dj_cqrs.logger import log_timed_out_queries

        log_timed_out_queries(exc, model)
    if kind is errors.Kind.BAD_MESSAGE:  # whatever the model's policy: it can never succeed
        return Outcome.dead(f"bad data, not retried: {reason}")
    try:
        retry = model.should_retry_cqrs(payload.retries, exc)
        delay = float(model.get_cqrs_retry_delay(payload.retries)) if retry else 0.0
    except Exception:
        logger.exception("%s.should_retry_cqrs/get_cqrs_retry_delay failed", model.__name__)
        return Outcome.retry(None, reason)  # let the transport's policy decide
    if retry:
        return Outcome.retry(delay, reason)
    if kind is errors.Kind.DEPLOYMENT:
        return Outcome.dead(f"not retried: {reason} -- {errors.SCHEMA_HINT}")
    return Outcome.dead(f"not retried after {payload.retries} retries: {reason}")


def _ignored_broadcast_sync(model: Any, payload: TransportPayload) -> bool:
    if payload.signal_type is not SignalType.SYNC or payload.queue:
        return False
    if getattr(model, "CQRS_ONLY_DIRECT_SYNCS", False):
        return True
    from dj_cqrs.conf import replica_settings

    return bool(replica_settings().get("CQRS_ONLY_DIRECT_SYNCS", False))


def _alias(model: Any) -> str:
    if getattr(model, "_meta", None) is None:  # RawReplicaMixin: no model, default database
        return DEFAULT_DB_ALIAS
    return router.db_for_write(model)


def _set_query_timeout(alias: str) -> None:
    """`CQRS_QUERY_TIMEOUT` for this transaction (see `dj_cqrs.utils.set_query_timeout`)."""
    from dj_cqrs.logger import install_capturer_on
    from dj_cqrs.utils import set_query_timeout

    connection = connections[alias]
    if set_query_timeout(connection, local=True):
        install_capturer_on(connection)


def _recover(alias: str) -> None:
    connection = connections[alias]
    if not connection.in_atomic_block and connection.errors_occurred:
        connection.close_if_unusable_or_obsolete()


CONSUMER_CONN_LIFETIME = 60.0
"""Seconds a consumer keeps a database connection when `CONN_MAX_AGE` is 0 (Django's default)."""
CONSUMER_CONN_CHECK_IDLE = 5.0
"""After this many idle seconds, a connection is checked (one round trip) before a batch."""


def _refresh_connections(idle: float = 0.0) -> None:
    """Drop broken, expired or dead-while-idle database connections before a batch.

    A consumer is a long-running worker, not a request: Django's per-request rule
    (`CONN_MAX_AGE = 0` closes the connection after each request) would reconnect for every
    batch, which costs more than applying it. What that rule protects a request from is a
    connection gone bad (a database restart or failover, a proxy or firewall that dropped it
    while idle) and a server session that lives forever. So with `CONN_MAX_AGE = 0` the
    consumer keeps a connection for `CONSUMER_CONN_LIFETIME` seconds, then reconnects; a
    positive `CONN_MAX_AGE` is used as it is and None keeps it. In every case a connection
    that saw an error, or that sat idle for `CONSUMER_CONN_CHECK_IDLE` seconds, is checked
    first and replaced if it is unusable (a batch that fails anyway is applied again message
    by message on a new connection, see `_apply_work`).
    """
    now = time.monotonic()
    for conn in connections.all(initialized_only=True):
        if conn.connection is None or conn.in_atomic_block:
            continue
        if conn.errors_occurred or idle >= CONSUMER_CONN_CHECK_IDLE:
            if not conn.is_usable():
                conn.close()
                continue
            conn.errors_occurred = False
        max_age = conn.settings_dict.get("CONN_MAX_AGE")
        if max_age is None or conn.close_at is None:
            continue  # persistent connections: kept until they break
        lifetime = max_age if max_age > 0 else CONSUMER_CONN_LIFETIME
        opened_at = conn.close_at - max_age  # Django sets close_at = connect time + max age
        if now >= opened_at + lifetime:
            conn.close()


def consume(
    cqrs_ids: Iterable[str] | None = None,
    *,
    transport: BaseTransport | None = None,
    on_ready: Any = None,
    on_tick: Any = None,
) -> None:
    """Consume and apply events for `cqrs_ids` (None: every replica model) until stopped.

    Uses the transport from settings (`dj_cqrs.conf.get_transport()`) unless one is given;
    call `transport.stop()` from another thread or a signal handler to return.

    Raises:
        ConfigurationError: no replica model, or an unknown CQRS_ID.
    """
    from dj_cqrs.replica.retention import TombstonePurger

    ids = resolve_cqrs_ids(cqrs_ids)
    if transport is None:
        from dj_cqrs.conf import get_transport

        transport = get_transport()
    purger = TombstonePurger.for_cqrs_ids(ids)

    def tick() -> None:
        purger.tick()
        if on_tick is not None:
            on_tick()

    transport.consume(make_handler(ids), cqrs_ids=ids, on_ready=on_ready, on_tick=tick)

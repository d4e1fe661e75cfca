"""`LoggingMixin` of django-cqrs 3.x: the log lines custom 3.x-style transports emit.

Custom transports written for 3.x subclass `LoggingMixin, BaseTransport` and call these hooks;
they log to `django-cqrs` as 3.x did (our own transports log on their own).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

__all__ = ["LoggingMixin"]

logger = logging.getLogger("django-cqrs")


class LoggingMixin:
    """Static logging hooks around consuming and producing one payload."""

    @staticmethod
    def log_consumed(payload: Any) -> None:
        if payload.pk:
            logger.info("CQRS is received: pk = %s (%s).", payload.pk, payload.cqrs_id)

    @staticmethod
    def log_consumed_accepted(payload: Any) -> None:
        if payload.pk:
            logger.info("CQRS is applied: pk = %s (%s).", payload.pk, payload.cqrs_id)

    @staticmethod
    def log_consumed_denied(payload: Any) -> None:
        if payload.pk:
            logger.warning("CQRS is denied: pk = %s (%s).", payload.pk, payload.cqrs_id)

    @staticmethod
    def log_consumed_failed(payload: Any) -> None:
        logger.warning(
            "CQRS is failed: pk = %s (%s), retries = %s.",
            payload.pk,
            payload.cqrs_id,
            payload.retries,
        )

    @staticmethod
    def log_dead_letter(payload: Any) -> None:
        logger.warning(
            "CQRS is added to dead letter queue: pk = %s (%s).", payload.pk, payload.cqrs_id
        )

    @staticmethod
    def log_delayed(payload: Any, delay: float, eta: datetime) -> None:
        logger.warning(
            "CQRS is delayed: pk = %s (%s), delay = %s sec, eta = %s.",
            payload.pk,
            payload.cqrs_id,
            delay,
            eta,
        )

    @staticmethod
    def log_requeued(payload: Any) -> None:
        logger.warning("CQRS is requeued: pk = %s (%s).", payload.pk, payload.cqrs_id)

    @staticmethod
    def log_produced(payload: Any) -> None:
        logger.info("CQRS is published: pk = %s (%s).", payload.pk, payload.cqrs_id)

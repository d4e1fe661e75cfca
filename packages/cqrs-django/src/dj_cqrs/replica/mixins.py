"""Replica model mixins: `ReplicaMixin` (a Django model kept in sync) and `RawReplicaMixin`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from django.db import models

from cqrs_core.options import CommonOptions
from cqrs_core.retry import RetryPolicy
from dj_cqrs.registries import ReplicaRegistry
from dj_cqrs.replica import errors
from dj_cqrs.replica.manager import ReplicaManager
from dj_cqrs.replica.mapping import BadData
from dj_cqrs.replica.meta import ReplicaMeta

logger = logging.getLogger("django-cqrs")


def retry_policy() -> RetryPolicy:
    """The retry policy of `CQRS['replica']` (`CQRS_MAX_RETRIES`, `CQRS_RETRY_DELAY`)."""
    from dj_cqrs.conf import cqrs_settings

    common = CommonOptions.from_mapping(cqrs_settings())
    return RetryPolicy(max_retries=common.max_retries, delay=common.retry_delay)


def _should_retry_cqrs(current_retry: int, exception: BaseException | None = None) -> bool:
    """Whether a message that failed after `current_retry` retries may try again.

    By default: up to `CQRS['replica']['CQRS_MAX_RETRIES']` (30; None = forever). Data that
    cannot fit the model (`BadData`, a database `DataError`) and a schema that lacks a table
    or column (see `errors.Kind`) are never retried: they go to the dead letters, from which
    `cqrs_dead_letters retry` can replay them once the replica is fixed.
    """
    if isinstance(exception, BadData) or errors.never_retried(exception):
        return False
    return retry_policy().should_retry(current_retry)


def _get_cqrs_retry_delay(current_retry: int = 0) -> float:
    """Seconds before the next attempt (`CQRS['replica']['CQRS_RETRY_DELAY']`, default 2)."""
    return retry_policy().delay_for(current_retry)


class ReplicaMixin(models.Model, metaclass=ReplicaMeta):
    """Mixin for replica models, which receive data updates from their master.

    Rows should be treated as read-only (not enforced, e.g. for the admin). The consumer
    applies SAVE/SYNC with `cqrs_save` and DELETE with `cqrs_delete`; see
    `dj_cqrs.replica.decide` (and `replica.rules`) for the revision and tombstone rules.
    """

    # Plain attributes, not a base class, so user migrations never name a private class of ours.
    should_retry_cqrs = staticmethod(_should_retry_cqrs)
    get_cqrs_retry_delay = staticmethod(_get_cqrs_retry_delay)

    CQRS_ID: ClassVar[str | None] = None
    """Unique CQRS identifier for all microservices."""
    CQRS_MAPPING: ClassVar[Mapping[str, str] | None] = None
    """Mapping of master data field name to replica model field name."""
    CQRS_CUSTOM_SERIALIZATION: ClassVar[bool] = False
    """Set it to True to skip the default data check (override cqrs_create and cqrs_update)."""
    CQRS_SELECT_FOR_UPDATE: ClassVar[bool] = False
    """Kept for compatibility: rows are always locked while an event is applied."""
    CQRS_NO_DB_OPERATIONS: ClassVar[bool] = False
    """Set it to True to disable any default DB operations (override cqrs_save/cqrs_delete)."""
    CQRS_META: ClassVar[bool] = False
    """Set it to True to receive the payload's meta data in cqrs_save/create/update/delete."""
    CQRS_ONLY_DIRECT_SYNCS: ClassVar[bool] = False
    """Set it to True to ignore SYNCs broadcast to every replica (apply only directed ones)."""

    cqrs_revision = models.IntegerField()
    cqrs_updated = models.DateTimeField()

    objects = models.Manager()
    cqrs = ReplicaManager()

    class Meta:
        abstract = True

    @classmethod
    def cqrs_save(
        cls,
        master_data: Mapping[str, Any],
        previous_data: Mapping[str, Any] | None = None,
        sync: bool = False,
        meta: Any = None,
    ) -> Any:
        """Create or update the instance from CQRS master instance data.

        Must not be overridden, or the revision and tombstone checks must be redone.

        Returns:
            The model instance (a truthy `Skipped` when the row was deleted after the event),
            or None when the data does not fit the model or the database failed (logged, as
            in django-cqrs; the consumer gets the error itself, see `replica.errors`).
        """
        if cls.CQRS_NO_DB_OPERATIONS:
            raise NotImplementedError(
                f"{cls.__name__} sets CQRS_NO_DB_OPERATIONS; override cqrs_save() to apply events."
            )
        return cls.cqrs.save_instance(master_data, previous_data, sync, meta)

    @classmethod
    def cqrs_create(
        cls,
        sync: bool,
        mapped_data: dict[str, Any],
        previous_data: Mapping[str, Any] | None = None,
        meta: Any = None,
    ) -> Any:
        """Create the instance from mapped data; override it for CQRS_CUSTOM_SERIALIZATION."""
        return cls._default_manager.create(**mapped_data)

    def cqrs_update(
        self,
        sync: bool,
        mapped_data: dict[str, Any],
        previous_data: Mapping[str, Any] | None = None,
        meta: Any = None,
    ) -> Any:
        """Update the instance from mapped data; override it for CQRS_CUSTOM_SERIALIZATION."""
        for key, value in mapped_data.items():
            setattr(self, key, value)
        self.save()
        return self

    @classmethod
    def cqrs_delete(cls, master_data: Mapping[str, Any], meta: Any = None) -> bool:
        """Delete the instance (leaving a tombstone); True even if there was nothing to delete.

        False (logged) when the data lacks the primary key or the database failed.
        """
        if cls.CQRS_NO_DB_OPERATIONS:
            raise NotImplementedError(
                f"{cls.__name__} sets CQRS_NO_DB_OPERATIONS; "
                "override cqrs_delete() to apply events."
            )
        return cls.cqrs.delete_instance(master_data)


class RawReplicaMixin:
    """Base for replicas that are not Django models (caches, search indexes, ...).

    Subclasses set `CQRS_ID` (they are registered when defined) and override the classmethods
    `cqrs_save` and `cqrs_delete`. Nothing is written to the database for them, and the
    revision and tombstone rules are theirs to implement.
    """

    CQRS_ID: ClassVar[str | None] = None
    CQRS_NO_DB_OPERATIONS: ClassVar[bool] = True
    CQRS_META: ClassVar[bool] = False
    CQRS_ONLY_DIRECT_SYNCS: ClassVar[bool] = False

    should_retry_cqrs = staticmethod(_should_retry_cqrs)
    get_cqrs_retry_delay = staticmethod(_get_cqrs_retry_delay)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("CQRS_ID"):
            ReplicaRegistry.register_model(cls)

    @classmethod
    def cqrs_save(
        cls,
        master_data: Mapping[str, Any],
        previous_data: Mapping[str, Any] | None = None,
        sync: bool = False,
        meta: Any = None,
    ) -> Any:
        """Apply a SAVE/SYNC; return something truthy on success."""
        raise NotImplementedError(f"{cls.__name__} must override cqrs_save()")

    @classmethod
    def cqrs_delete(cls, master_data: Mapping[str, Any], meta: Any = None) -> bool:
        """Apply a DELETE; return True on success."""
        raise NotImplementedError(f"{cls.__name__} must override cqrs_delete()")

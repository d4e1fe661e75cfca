"""Model hooks: the signals of master models and the handlers that turn them into CQRS events.

`dj_cqrs.signals` re-exports them under their django-cqrs 3.x path.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import signals
from django.dispatch import Signal

from dj_cqrs.master import events
from dj_cqrs.master.serialization import tracked_snapshot
from dj_cqrs.outbox.background_publisher import publish_fresh
from dj_cqrs.outbox.committed import snapshot
from dj_cqrs.outbox.one_statement import WRITTEN

logger = logging.getLogger("django-cqrs")

post_bulk_create = Signal()
"""Sent after `Model.cqrs.bulk_create` with `instances` and `using`."""

post_update = Signal()
"""Sent after `Model.cqrs.bulk_update` with `instances` and `using`."""


class MasterSignals:
    """Signals registry and handlers for CQRS master models."""

    @classmethod
    def register_model(cls, model_cls: Any) -> None:
        """Connect the handlers for `model_cls` (idempotent)."""
        uid = "dj_cqrs.master"
        signals.post_save.connect(cls.post_save, sender=model_cls, weak=False, dispatch_uid=uid)
        signals.pre_delete.connect(cls.pre_delete, sender=model_cls, weak=False, dispatch_uid=uid)
        signals.post_delete.connect(cls.post_delete, sender=model_cls, weak=False, dispatch_uid=uid)
        post_bulk_create.connect(
            cls.post_bulk_create, sender=model_cls, weak=False, dispatch_uid=uid
        )
        post_update.connect(cls.post_bulk_update, sender=model_cls, weak=False, dispatch_uid=uid)

    @classmethod
    def post_save(cls, sender: Any, **kwargs: Any) -> None:
        """Queue a SAVE (or, with `sync=True`, a SYNC) of `kwargs['instance']` until commit."""
        instance = kwargs["instance"]
        if not events.produces(instance):
            return
        using = kwargs.get("using") or instance._state.db or "default"
        written = instance.__dict__.pop(WRITTEN, None)
        if written is not None:  # stored by the save's own statement, which has committed
            instance.reset_cqrs_saves_count()
            publish_fresh(using, [written], [snapshot(instance, False)])
            return
        if kwargs.get("sync"):
            if instance.is_sync_instance():
                event = events.sync_event(instance, using, kwargs.get("queue"), deferred=True)
                events.enqueue(using, [event])
            return
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "cqrs_revision" not in update_fields:
            return  # a partial save without update_cqrs_fields publishes nothing (django-cqrs)
        if not instance.is_sync_instance():
            return  # not published at all, as in django-cqrs (checked again when sent)
        instance._cqrs_refresh_expressions(using)
        event = events.save_event(instance, using, created=bool(kwargs.get("created")))
        events.enqueue(using, [event])

    @classmethod
    def pre_delete(cls, sender: Any, **kwargs: Any) -> None:
        """Load a deferred `cqrs_revision` while the row exists: the DELETE carries it + 1.

        Without it a `.only("id").delete()` would send revision 1, a tombstone too low to stop
        an older SAVE from bringing the row back on replicas.
        """
        instance = kwargs["instance"]
        if events.produces(instance) and not isinstance(
            instance.__dict__.get("cqrs_revision"), int
        ):
            with contextlib.suppress(ObjectDoesNotExist):  # already gone: nothing to read
                instance.refresh_from_db(using=kwargs.get("using"), fields=["cqrs_revision"])

    @classmethod
    def post_delete(cls, sender: Any, **kwargs: Any) -> None:
        """Queue a DELETE of `kwargs['instance']` until commit."""
        instance = kwargs["instance"]
        if not events.produces(instance) or not instance.is_sync_instance():
            return
        using = kwargs.get("using") or instance._state.db or "default"
        events.enqueue(using, [events.delete_event(instance, using)])

    @classmethod
    def post_bulk_create(cls, sender: Any, **kwargs: Any) -> None:
        """Queue a SAVE per instance created by `Model.cqrs.bulk_create`."""
        using = kwargs.get("using") or "default"
        queued = []
        for instance in kwargs["instances"]:
            if not events.produces(instance):
                continue
            if instance.pk is None:
                logger.warning(
                    "CQRS: %s created by bulk_create has no primary key (the database did not "
                    "return it); it is not published. Set the pk before bulk_create.",
                    type(instance).__name__,
                )
                continue
            if instance.is_sync_instance():
                queued.append(events.save_event(instance, using, created=True))
            instance.__dict__["_cqrs_tracked_initial"] = tracked_snapshot(instance)
        events.enqueue(using, queued)

    @classmethod
    def post_bulk_update(cls, sender: Any, **kwargs: Any) -> None:
        """Queue a SAVE per instance updated by `Model.cqrs.bulk_update`."""
        using = kwargs.get("using") or "default"
        queued = []
        for instance in kwargs["instances"]:
            if not events.produces(instance):
                continue
            previous = instance.__dict__.pop("_cqrs_bulk_previous", None)
            if not instance.is_sync_instance():
                continue
            queued.append(
                events.save_event(instance, using, created=False, previous=previous, fresh=True)
            )
        events.enqueue(using, queued)

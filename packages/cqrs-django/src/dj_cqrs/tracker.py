"""django-cqrs 3.x's `dj_cqrs.tracker` names, over our built-in tracked-fields code.

3.x added a django-model-utils `FieldTracker` to every model with CQRS_TRACKED_FIELDS. Here
tracking is part of `RawMasterMixin` (no extra dependency), and `CQRSTracker` is a read-only
view of it at `instance.<FIELDS_TRACKER_FIELD_NAME>`, for code that used 3.x's tracker.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model

from dj_cqrs.constants import FIELDS_TRACKER_FIELD_NAME
from dj_cqrs.master.serialization import (
    all_tracked,
    changed_tracked,
    tracked_fields,
    wire_value,
)

__all__ = ["CQRSTracker"]


class _CQRSTrackerInstance:
    """The tracked fields of one instance, compared with their values at load or last save."""

    def __init__(self, instance: Model) -> None:
        self.instance = instance
        tracked = tracked_fields(type(instance)) or []
        self._by_key = {f.attname: f for f in tracked}
        self.fields = set(self._by_key)
        """Tracked fields by attname (`author_id` for a foreign key), as 3.x's tracker."""

    def _before(self) -> dict[str, Any]:
        return dict(self.instance.__dict__.get("_cqrs_tracked_initial") or {})

    def get_field_value(self, field: str) -> Any:
        """The current value of the tracked field `field` (attname), in its JSON form."""
        return wire_value(getattr(self.instance, self._by_key[field].attname))

    def previous(self, field: str) -> Any:
        """The value of `field` (attname) at load or last save (None if unknown)."""
        return self._before().get(field)

    def has_changed(self, field: str) -> bool:
        """Whether `field` (attname) differs from its value at load or last save."""
        return self._by_key[field].name in (self.changed() or {})

    def changed(self) -> dict[str, Any]:
        """Old values of the changed tracked fields, by field name (`author`)."""
        return changed_tracked(self.instance, self._before()) or {}

    def changed_initial(self) -> dict[str, Any]:
        """`{attname: None}` for each tracked field that has a value (a new row's changes)."""
        return changed_tracked(self.instance, None) or {}

    def current(self) -> dict[str, Any]:
        """Every loaded tracked value by attname."""
        return all_tracked(self.instance) or {}


class CQRSTracker:
    """Descriptor giving a `_CQRSTrackerInstance` of a master instance whose model tracks fields.

    Accessing it on a model without CQRS_TRACKED_FIELDS raises AttributeError, so
    `hasattr(instance, FIELDS_TRACKER_FIELD_NAME)` tells whether fields are tracked, as in 3.x.
    """

    tracker_class = _CQRSTrackerInstance

    def __get__(self, instance: Model | None, owner: type[Model]) -> Any:
        if tracked_fields(owner) is None:
            raise AttributeError(
                f"{owner.__name__} tracks no fields: set CQRS_TRACKED_FIELDS to use its tracker."
            )
        if instance is None:
            return self
        return self.tracker_class(instance)

    @classmethod
    def add_to_model(cls, model_cls: type[Model]) -> None:
        """Make the tracker reachable on `model_cls` (tracking itself needs nothing more)."""
        if not isinstance(model_cls.__dict__.get(FIELDS_TRACKER_FIELD_NAME), cls):
            setattr(model_cls, FIELDS_TRACKER_FIELD_NAME, cls())

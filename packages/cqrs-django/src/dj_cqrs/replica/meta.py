"""`ReplicaMeta`: registers concrete replica models in `ReplicaRegistry` as they are defined."""

from __future__ import annotations

from typing import Any

from django.db.models.base import ModelBase

from dj_cqrs.registries import ReplicaRegistry


class ReplicaMeta(ModelBase):
    """Metaclass of `ReplicaMixin`: every concrete, non-proxy subclass is registered by CQRS_ID.

    An abstract model is registered too when it declares a CQRS_ID and
    `CQRS_NO_DB_OPERATIONS = True`: it has no table and handles events in its own hooks
    (django-cqrs registered such models; an abstract base without that flag is a template).
    """

    def __new__(
        mcs, name: str, bases: tuple[type, ...], attrs: dict[str, Any], **kwargs: Any
    ) -> Any:
        cls = super().__new__(mcs, name, bases, attrs, **kwargs)
        meta = getattr(cls, "_meta", None)
        if meta is None or meta.proxy:
            return cls
        if not getattr(cls, "CQRS_ID", None):
            return cls  # unregistered; `manage.py check` reports it (cqrs.E013), no traceback
        if not meta.abstract or (
            "CQRS_ID" in attrs and getattr(cls, "CQRS_NO_DB_OPERATIONS", False) is True
        ):
            ReplicaMeta.register(cls)
        return cls

    @staticmethod
    def register(model_cls: Any) -> None:
        """Register `model_cls` (also usable for proxies or classes built another way).

        Raises:
            ConfigurationError: no CQRS_ID.
            DuplicateCQRSId: another replica model already uses it (also an AssertionError,
                as django-cqrs raised).
        """
        ReplicaRegistry.register_model(model_cls)

"""`ReplicaMeta`: registers concrete replica models in `ReplicaRegistry` as they are defined."""

from __future__ import annotations

from typing import Any

from django.db.models.base import ModelBase

from dj_cqrs.registries import ReplicaRegistry


class ReplicaMeta(ModelBase):
    """Metaclass of `ReplicaMixin`: every concrete, non-proxy subclass is registered by CQRS_ID."""

    def __new__(mcs, name: str, bases: tuple[type, ...], attrs: dict[str, Any], **kwargs: Any):  # type: ignore[no-untyped-def]
        cls = super().__new__(mcs, name, bases, attrs, **kwargs)
        meta = getattr(cls, "_meta", None)
        if meta is not None and not meta.abstract and not meta.proxy:
            ReplicaMeta.register(cls)
        return cls

    @staticmethod
    def register(model_cls: Any) -> None:
        """Register `model_cls` (also usable for proxies or classes built another way).

        Raises:
            ConfigurationError: no CQRS_ID, or another replica model already uses it.
        """
        ReplicaRegistry.register_model(model_cls)

"""Metaclass of MasterMixin models: registers each concrete model under its CQRS_ID."""

from __future__ import annotations

from typing import Any

from django.db.models.base import ModelBase

from dj_cqrs.master.signals import MasterSignals
from dj_cqrs.registries import MasterRegistry


class MasterMeta(ModelBase):
    """Registers concrete master models and connects their signals.

    Abstract models are skipped. Proxy models get their signals connected (saving through a proxy
    publishes under the inherited CQRS_ID) but join the registry only through an explicit
    `MasterMeta.register(ProxyModel)`. A concrete subclass that merely inherits the CQRS_ID of a
    registered model (multi-table inheritance) is not registered a second time.
    """

    def __new__(
        mcs, name: str, bases: tuple[type, ...], attrs: dict[str, Any], **kwargs: Any
    ) -> Any:
        cls = super().__new__(mcs, name, bases, attrs, **kwargs)
        meta = getattr(cls, "_meta", None)
        cqrs_id = getattr(cls, "CQRS_ID", None)
        if meta is None or meta.abstract or not cqrs_id:
            return cls
        if meta.proxy:
            _connect(cls)
            return cls
        owner = MasterRegistry.get_model_by_cqrs_id(cqrs_id)
        if owner is not None and owner is not cls and "CQRS_ID" not in cls.__dict__:
            _connect(cls)  # inherits a registered CQRS_ID: publish as it, don't re-register
            return cls
        mcs.register(cls)
        return cls

    @staticmethod
    def register(model_cls: Any) -> Any:
        """Register `model_cls` in MasterRegistry and connect its signals (idempotent).

        This is how a model publishes when MasterMixin's metaclass cannot be used: a
        `RawMasterMixin` model combined with another metaclass (`class Node(MPTTModel,
        RawMasterMixin)`), or a proxy model with its own CQRS_ID. Returns the model, so it
        also works as a class decorator.
        """
        if not (isinstance(model_cls, type) and getattr(model_cls, "_cqrs_master_model", False)):
            raise TypeError(
                f"MasterMeta.register() needs a model class inheriting "
                f"dj_cqrs.mixins.RawMasterMixin (or MasterMixin), got {model_cls!r}."
            )
        MasterRegistry.register_model(model_cls)
        _connect(model_cls)
        return model_cls


def _connect(model_cls: Any) -> None:
    MasterSignals.register_model(model_cls)

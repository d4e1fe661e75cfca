"""Registries of master and replica models by CQRS_ID (django-cqrs API)."""

from __future__ import annotations

from typing import Any

from cqrs_core.registries import Registry

_masters: Registry[Any] = Registry("master")
_replicas: Registry[Any] = Registry("replica")


class _RegistryFacade:
    _registry: Registry[Any]

    @classmethod
    def register_model(cls, model_cls: Any) -> None:
        """Registration of CQRS model identifiers; a different model with the same id is an error."""
        cls._registry.register_model(model_cls)

    @classmethod
    def get_model_by_cqrs_id(cls, cqrs_id: str) -> Any | None:
        """The model registered under `cqrs_id`, or None."""
        return cls._registry.get_model_by_cqrs_id(cqrs_id)

    @classmethod
    def models(cls) -> dict[str, Any]:
        """Every registered model by CQRS_ID."""
        return {m.CQRS_ID: m for m in cls._registry}


class MasterRegistry(_RegistryFacade):
    """Master models (those that publish), by CQRS_ID."""

    _registry = _masters


class ReplicaRegistry(_RegistryFacade):
    """Replica models (those that apply events), by CQRS_ID."""

    _registry = _replicas

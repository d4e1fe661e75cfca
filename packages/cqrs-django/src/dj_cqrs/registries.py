"""Registries of master and replica models by CQRS_ID (django-cqrs API)."""

from __future__ import annotations

from typing import Any, ClassVar

from cqrs_core.registries import Registry

_masters: Registry[Any] = Registry("master")
_replicas: Registry[Any] = Registry("replica")


class _RegistryFacade:
    _registry: ClassVar[Registry[Any]]
    models: ClassVar[dict[str, Any]]
    """Every registered model by CQRS_ID: the registry's own dict, as in django-cqrs."""

    @classmethod
    def register_model(cls, model_cls: Any) -> None:
        """Registration of CQRS model identifiers.

        Raises:
            DuplicateCQRSId: a different model already has this CQRS_ID (it is both a
                `ConfigurationError` and, as django-cqrs raised, an `AssertionError`).
        """
        cls._registry.register_model(model_cls)

    @classmethod
    def get_model_by_cqrs_id(cls, cqrs_id: str) -> Any | None:
        """The model registered under `cqrs_id`, or None."""
        return cls._registry.get_model_by_cqrs_id(cqrs_id)


class MasterRegistry(_RegistryFacade):
    """Master models (those that publish), by CQRS_ID."""

    _registry = _masters
    models = _masters.models


class ReplicaRegistry(_RegistryFacade):
    """Replica models (those that apply events), by CQRS_ID."""

    _registry = _replicas
    models = _replicas.models

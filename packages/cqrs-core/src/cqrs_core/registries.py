"""Registries of models by CQRS_ID, shared by masters and replicas (no framework needed)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from cqrs_core.exceptions import ConfigurationError

T = TypeVar("T")


class DuplicateCQRSId(ConfigurationError, AssertionError):
    """Two different models claim the same CQRS_ID in one registry.

    Also an `AssertionError`: django-cqrs 3.x asserted unique ids, so projects may catch that.
    It is a real raise, so it still happens under `python -O`.
    """


class Registry(Generic[T]):
    """Models of one side (master or replica) keyed by their `CQRS_ID`."""

    def __init__(self, side: str) -> None:
        self.side = side
        self.models: dict[str, T] = {}
        """The live mapping CQRS_ID -> model (django-cqrs exposed it as `Registry.models`)."""

    def register_model(self, model_cls: T) -> None:
        """Register `model_cls` under its `CQRS_ID`; registering the same class twice is a no-op.

        Raises:
            ConfigurationError: the model has no CQRS_ID.
            DuplicateCQRSId: another model already has this CQRS_ID.
        """
        cqrs_id = getattr(model_cls, "CQRS_ID", None)
        if not isinstance(cqrs_id, str) or not cqrs_id:
            raise ConfigurationError(f"{_name(model_cls)} needs a CQRS_ID (a non-empty string).")
        existing = self.models.get(cqrs_id)
        if existing is not None and existing is not model_cls:
            raise DuplicateCQRSId(
                f"CQRS_ID {cqrs_id!r} is used by both {_name(existing)} and {_name(model_cls)} "
                f"({self.side} side); give each model its own CQRS_ID."
            )
        self.models[cqrs_id] = model_cls

    def unregister(self, cqrs_id: str) -> None:
        """Forget a model (for tests that build models dynamically)."""
        self.models.pop(cqrs_id, None)

    def get_model_by_cqrs_id(self, cqrs_id: str) -> T | None:
        """The model registered under `cqrs_id`, or None."""
        return self.models.get(cqrs_id)

    def cqrs_ids(self) -> list[str]:
        """Every registered CQRS_ID, sorted."""
        return sorted(self.models)

    def __contains__(self, cqrs_id: object) -> bool:
        return cqrs_id in self.models

    def __iter__(self) -> Iterator[T]:
        return iter(list(self.models.values()))

    def __len__(self) -> int:
        return len(self.models)


def _name(model_cls: object) -> str:
    return (
        f"{getattr(model_cls, '__module__', '?')}.{getattr(model_cls, '__qualname__', model_cls)}"
    )

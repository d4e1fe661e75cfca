"""django-cqrs 3.x style transports for `test_legacy_api`, importable by dotted path (also in
the worker processes of `cqrs_consume -w N`)."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from dj_cqrs.transport.base import BaseTransport
from dj_cqrs.transport.mixins import LoggingMixin


class RecordingLegacyTransport(LoggingMixin, BaseTransport):
    """Records `produce`/`consume` calls; with CQRS_TEST_LEGACY_DIR, `consume` also leaves a
    file named after its process id there (for worker processes)."""

    produced: ClassVar[list[Any]] = []
    consumed: ClassVar[list[dict[str, Any]]] = []

    @staticmethod
    def produce(payload: Any) -> None:
        RecordingLegacyTransport.produced.append(payload)

    @staticmethod
    def consume(*args: Any, **kwargs: Any) -> None:
        RecordingLegacyTransport.consumed.append(dict(kwargs))
        folder = os.environ.get("CQRS_TEST_LEGACY_DIR")
        if folder:
            with open(os.path.join(folder, f"{os.getpid()}.txt"), "w") as out:
                out.write(repr(sorted(kwargs.get("cqrs_ids") or [])))

    @staticmethod
    def clean_connection(*args: Any, **kwargs: Any) -> None:
        pass

    @classmethod
    def clear(cls) -> None:
        cls.produced.clear()
        cls.consumed.clear()

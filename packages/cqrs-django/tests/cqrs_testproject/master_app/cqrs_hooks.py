"""correlation_function / meta_function used by the golden-file tests (same as the capture's)."""

from __future__ import annotations

from typing import Any


def golden_correlation(signal_type: Any, cqrs_id: str, instance_pk: Any, queue: Any) -> str:
    return f"golden-corr:{signal_type}:{cqrs_id}:{instance_pk}:{queue}"


def golden_meta(**kwargs: Any) -> dict[str, Any]:
    return {
        "service": "golden-master",
        "model": type(kwargs["obj"]).__name__,
        "signal_type": kwargs["signal_type"],
        "version": 1,
    }

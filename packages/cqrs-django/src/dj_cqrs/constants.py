"""Constants of the public API (`SignalType` lives in cqrs-core)."""

from __future__ import annotations

from cqrs_core.constants import SignalType

__all__ = ["SignalType"]

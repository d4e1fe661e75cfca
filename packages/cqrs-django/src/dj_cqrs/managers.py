"""Managers of the public API (`Model.cqrs`)."""

from __future__ import annotations

from dj_cqrs.master.manager import MasterManager
from dj_cqrs.replica.manager import ReplicaManager

__all__ = ["MasterManager", "ReplicaManager"]

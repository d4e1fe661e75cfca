"""Model mixins of the public API: master (publishing) and replica (applying) models."""

from __future__ import annotations

from dj_cqrs.master.mixins import MasterMixin, RawMasterMixin
from dj_cqrs.replica.mixins import RawReplicaMixin, ReplicaMixin

__all__ = ["MasterMixin", "RawMasterMixin", "RawReplicaMixin", "ReplicaMixin"]

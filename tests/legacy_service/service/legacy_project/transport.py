"""In-house transport of the service: keeps produced payloads in memory (used for local runs)."""

from __future__ import annotations

from dj_cqrs.controller import consumer
from dj_cqrs.transport.base import BaseTransport


class RecordingTransport(BaseTransport):
    payloads = []

    @staticmethod
    def produce(payload):
        RecordingTransport.payloads.append(payload)

    @staticmethod
    def consume(*args, **kwargs):
        # Applies everything recorded so far to the local replicas, oldest first.
        applied = []
        while RecordingTransport.payloads:
            applied.append(consumer.consume(RecordingTransport.payloads.pop(0)))
        return applied

    @staticmethod
    def clean_connection(*args, **kwargs):
        RecordingTransport.payloads.clear()

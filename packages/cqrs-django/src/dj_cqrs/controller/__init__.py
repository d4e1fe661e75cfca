"""django-cqrs 3.x controllers: `producer.produce(payload)` and `consumer.consume(payload)`."""

from __future__ import annotations

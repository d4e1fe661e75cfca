"""Functions named in CQRS['master']: the correlation id and the metadata of every event."""

from __future__ import annotations


def correlation_id_for(signal_type, cqrs_id, instance_pk, queue):
    return f"legacy:{signal_type}:{cqrs_id}:{instance_pk}"


def service_meta(obj=None, **kwargs):
    return {"service": "legacy-master", "signal_type": kwargs.get("signal_type")}

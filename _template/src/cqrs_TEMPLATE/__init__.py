"""TEMPLATE transport for cqrs-core: select it with `CQRS = {'transport': 'TEMPLATE', ...}`."""

from __future__ import annotations

from cqrs_TEMPLATE.__about__ import __version__
from cqrs_TEMPLATE.transport import TemplateTransport

__all__ = ["TemplateTransport", "__version__"]

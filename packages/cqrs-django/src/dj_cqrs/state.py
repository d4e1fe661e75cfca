"""`cqrs_state`: per-thread state of django-cqrs 3.x (`dj_cqrs.state.cqrs_state`).

`bulk_relate_cm` is the active `dj_cqrs.utils.bulk_relate_cqrs_serialization()` block of this
thread, or None. A `threading.local` subclass, so that every thread starts with None (a plain
`threading.local()` given the attribute at import has it in the importing thread only).
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["cqrs_state"]


class _CQRSState(threading.local):
    bulk_relate_cm: Any = None


cqrs_state = _CQRSState()

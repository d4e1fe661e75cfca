"""Keep the root test run out of `service/`: the legacy suite needs its own settings and config.

`test_runs_unchanged.py` runs it in a subprocess instead.
"""

from __future__ import annotations

collect_ignore = ["service"]

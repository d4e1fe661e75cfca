"""`DatabaseWrapper` of `cqrs_testproject.sqlite_immediate` (see the package docstring)."""

from __future__ import annotations

from typing import Any

from django.db.backends.sqlite3 import base


class DatabaseWrapper(base.DatabaseWrapper):
    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()
        self.transaction_mode = params.pop("transaction_mode", None)  # not sqlite3.connect's
        return params

    def _start_transaction_under_autocommit(self) -> None:
        mode = getattr(self, "transaction_mode", None)
        self.cursor().execute(f"BEGIN {mode}" if mode else "BEGIN")

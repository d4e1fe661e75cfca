"""Child process of `consuming.crash_in_subprocess`: consume, report a batch, then hang.

Usage: `python -m cqrs_core.testing._crash_child module:Class` with `{"options": ...,
"cqrs_ids": [...]}` on stdin. Prints `taken <n>` once its handler holds a batch and never
returns from it, so the parent can SIGKILL it mid-batch.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

from cqrs_core.messages import Outcome
from cqrs_core.payload import TransportPayload
from cqrs_core.transports.base import BaseTransport


def main() -> None:
    module, _, name = sys.argv[1].partition(":")
    target: Any = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part)
    cls: type[BaseTransport] = target
    spec = json.loads(sys.stdin.read())

    def handler(payloads: Sequence[TransportPayload]) -> list[Outcome]:
        sys.stdout.write(f"taken {len(payloads)}\n")
        sys.stdout.flush()
        while True:  # killed here, mid-batch: nothing is settled
            time.sleep(60)

    transport = cls(spec["options"])
    transport.consume(handler, cqrs_ids=spec["cqrs_ids"])


if __name__ == "__main__":
    main()

"""Run by test_kafka_faults: consume, record what the handler saw, then hang mid-batch."""

from __future__ import annotations

import json
import os
import sys
import time

from cqrs_kafka import KafkaTransport


def main() -> None:
    options, out = json.loads(sys.argv[1]), sys.argv[2]

    def handler(payloads):
        with open(out, "a") as fh:
            fh.write("".join(f"{p.instance_pk}\n" for p in payloads))
            fh.flush()
            os.fsync(fh.fileno())
        time.sleep(600)  # killed here: applied but never committed
        return []

    KafkaTransport(options).consume(handler, cqrs_ids=sys.argv[3].split(","))


if __name__ == "__main__":
    main()

"""What a `cqrs_consume` process imports: not what it does not use (issue 17).

Each module costs the consumer's resident memory for its whole life (confluent-kafka and kombu
together are about 5 MiB), so the system checks that every management command runs must not
import every installed transport to learn their setting keys.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from commands_support import manage_env

PROBE = """
import json, sys
import django
django.setup()
from django.core.management import call_command
call_command("check")
import dj_cqrs.management.commands.cqrs_consume, dj_cqrs.replica.worker, dj_cqrs.consumer
print(json.dumps(sorted(sys.modules)))
"""


def loaded_modules(cqrs: dict[str, str]) -> set[str]:
    """The modules of a fresh process after the checks and the consumer's imports."""
    env = manage_env(
        CQRS_TEST_TRANSPORT=cqrs["transport"],
        CQRS_TEST_URL=cqrs["url"],
        PYTHONPATH=os.pathsep.join(
            filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])
        ),
    )
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    ("transport", "url", "unused"),
    [
        ("rabbitmq", "amqp://guest:guest@127.0.0.1:5672/%2F", ["cqrs_kafka", "cqrs_kombu"]),
        ("kafka", "kafka://127.0.0.1:9092", ["cqrs_kombu", "cqrs_rabbitmq", "pika"]),
    ],
)
def test_checks_import_only_the_configured_transport(
    transport: str, url: str, unused: list[str]
) -> None:
    modules = loaded_modules({"transport": transport, "url": url})
    assert f"cqrs_{transport}" in modules
    # the metrics endpoint's server is imported only when it starts (here it is off)
    assert not [name for name in [*unused, "http.server"] if name in modules]

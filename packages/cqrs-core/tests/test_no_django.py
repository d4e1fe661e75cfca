"""cqrs-core must import without Django, broker clients or plugins (checked in a fresh process)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

FORBIDDEN = (
    "django",
    "pika",
    "kombu",
    "confluent_kafka",
    "dj_cqrs",
    "cqrs_rabbitmq",
    "cqrs_kombu",
    "cqrs_kafka",
)


def imported_after(statements: str) -> set[str]:
    code = textwrap.dedent(
        """
        import json, sys
        {statements}
        print(json.dumps(sorted(sys.modules)))
        """
    ).format(statements=statements)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def forbidden_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in FORBIDDEN)


def test_core_imports_nothing_framework_or_broker_specific() -> None:
    modules = imported_after(
        "import cqrs_core, cqrs_core.codec, cqrs_core.routing, cqrs_core.transports.memory, "
        "cqrs_core.testing, cqrs_core.testing.proxy"
    )
    assert "cqrs_core.transports.memory" in modules  # the probe really ran
    assert forbidden_in(modules) == []
    # `cqrs_core.testing` is usable without pytest (only `.suite` and `.plugin` need it).
    assert "pytest" not in modules and "_pytest" not in modules


def test_listing_transports_imports_no_plugin() -> None:
    modules = imported_after(
        "from cqrs_core.__main__ import list_transports\nassert list_transports()"
    )
    assert forbidden_in(modules) == []
    assert "cqrs_core.transports.memory" not in modules


def test_probe_would_notice_a_forbidden_import() -> None:
    """The check above is not vacuous: a module imported by the probe does show up."""
    assert forbidden_in({"django.conf", "pika", "json"}) == ["django.conf", "pika"]
    assert "json" in imported_after("import json")

"""Helpers of the management command tests.

`JsonLinesTransport` appends every published message to a file (`CQRS['url']` is the path), one
JSON line `{"routing_key", "body"}` each, with an exclusive lock, so the messages published by
commands run as subprocesses can be read back and applied by the test.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from cqrs_core import codec, routing
from cqrs_core.messages import Handler, Outgoing
from cqrs_core.payload import TransportPayload
from cqrs_core.transports import BaseTransport

MANAGE = Path(__file__).resolve().parent / "cqrs_testproject" / "manage.py"
TRANSPORT = "commands_support.JsonLinesTransport"


class JsonLinesTransport(BaseTransport):
    """Publishes to a JSON-lines file; consuming is done by the test (`published`)."""

    name = "jsonlines"
    api_version = 1

    def _publish(self, messages: Sequence[Outgoing]) -> None:
        lines = []
        for message in messages:
            assert message.payload is not None
            key = routing.routing_key(message.payload)
            lines.append(json.dumps({"routing_key": key, "body": message.body.decode()}) + "\n")
        with open(self.path, "a", encoding="utf-8") as out:
            fcntl.flock(out, fcntl.LOCK_EX)
            out.write("".join(lines))

    @property
    def path(self) -> str:
        url = self.common.url or ""
        return url.removeprefix("file://")

    def _consume(
        self,
        handler: Handler,
        *,
        cqrs_ids: frozenset[str],
        on_ready: Callable[[], None] | None,
        on_tick: Callable[[], None] | None,
    ) -> None:
        raise NotImplementedError("tests read the file with `published()`")

    def _close(self) -> None:
        pass


def published(path: str | os.PathLike[str]) -> list[tuple[str, TransportPayload]]:
    """(routing key, decoded payload) of every message written to `path` so far."""
    if not os.path.exists(path):
        return []
    found = []
    with open(path, encoding="utf-8") as source:
        for line in source:
            item = json.loads(line)
            found.append((item["routing_key"], codec.decode(item["body"])))
    return found


def manage_env(**extra: str) -> dict[str, str]:
    """The environment of `manage.py` subprocesses: the test run's database and settings."""
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "cqrs_testproject.settings")
    env.pop("CQRS_TEST_TRANSPORT", None)
    env.update(extra)
    return env


def manage(*args: str) -> list[str]:
    """The command line of `manage.py ARGS` with this interpreter."""
    return [sys.executable, str(MANAGE), *args]


def pipeline(
    commands: Sequence[Sequence[str]], env: dict[str, str], timeout: float = 120
) -> tuple[list[int], bytes, list[str]]:
    """Run `commands` joined by OS pipes like a shell does; return (exit codes, stdout, stderrs)."""
    procs: list[subprocess.Popen[bytes]] = []
    errors = [tempfile.TemporaryFile() for _ in commands]  # noqa: SIM115 (closed below)
    previous = None
    try:
        for args, error in zip(commands, errors):
            proc = subprocess.Popen(
                list(args),
                stdin=previous.stdout if previous is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=error,
                env=env,
            )
            if previous is not None and previous.stdout is not None:
                previous.stdout.close()  # only the next process holds the read end now
            procs.append(proc)
            previous = proc
        out, _ = procs[-1].communicate(timeout=timeout)
        for proc in procs[:-1]:
            proc.wait(timeout=timeout)
        texts = []
        for error in errors:
            error.seek(0)
            texts.append(error.read().decode(errors="replace"))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        for error in errors:
            error.close()
    return [p.returncode for p in procs], out, texts

"""`cqrs_dead_letters` and `cqrs_transports`."""

from __future__ import annotations

import io
import json
import subprocess
import threading
from typing import Any

import pytest
from commands_support import manage, manage_env
from django.core.management import call_command
from django.core.management.base import CommandError
from replica_support import data, memory_cqrs_fixture, payload  # noqa: F401 (fixture `memory_cqrs`)

from cqrs_core import codec
from cqrs_core.messages import DeadLetter
from cqrs_core.transports import register_transport, unregister_transport
from cqrs_core.transports.memory import MemoryTransport


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def bury(transport: MemoryTransport, *letters: DeadLetter) -> None:
    for letter in letters:
        transport.broker.dead_letter(transport.common.require_dead_letter_queue(), letter)


@pytest.fixture
def letters() -> list[DeadLetter]:
    first = payload("author", data(1, 0, 1, name="a"))
    second = payload("author", data(2, 3, 2, name="b"))
    return [
        DeadLetter(body=codec.encode(first), reason="RuntimeError: boom", payload=first),
        DeadLetter(body=codec.encode(second), reason="expired", payload=second),
        DeadLetter(body=b"{not json", reason="MalformedMessage: body is not valid JSON"),
    ]


@pytest.mark.django_db
def test_dump_prints_bodies_and_reasons_without_removing_them(memory_cqrs, letters):
    bury(memory_cqrs, *letters)
    out, err = run("cqrs_dead_letters", "dump")
    lines = out.splitlines()
    assert [json.loads(line)["instance_pk"] for line in lines[:2]] == [1, 2]
    assert lines[2] == "{not json"
    assert err.splitlines() == [
        "#1 RuntimeError: boom",
        "#2 expired",
        "#3 MalformedMessage: body is not valid JSON",
        "3 dead letter(s).",
    ]
    assert len(memory_cqrs.dead_letters()) == 3
    out, _ = run("cqrs_dead_letters", "dump", "--limit", "1")
    assert len(out.splitlines()) == 1


@pytest.mark.django_db
def test_retry_sends_them_back_and_purge_deletes(memory_cqrs, letters):
    bury(memory_cqrs, *letters)
    out, _ = run("cqrs_dead_letters", "retry", "--limit", "2")
    assert out.strip() == "2 dead letter(s) sent back to the queue."
    assert memory_cqrs.broker.depth("replica") == 2
    assert len(memory_cqrs.dead_letters()) == 1
    out, _ = run("cqrs_dead_letters", "purge")
    assert out.strip() == "1 dead letter(s) deleted."
    assert memory_cqrs.dead_letters() == []
    out, err = run("cqrs_dead_letters", "dump")
    assert (out, err.strip()) == ("", "0 dead letter(s).")


class _Hanging(MemoryTransport):
    name = "hanging_dl"
    release = threading.Event()

    def dead_letters(self, *, limit: int | None = None) -> list[DeadLetter]:
        self.release.wait(30)
        return []


class _NoDeadLetters(MemoryTransport):
    name = "no_dl"

    def dead_letters(self, *, limit: int | None = None) -> list[DeadLetter]:
        return super(MemoryTransport, self).dead_letters(limit=limit)


@pytest.fixture
def transport_named(settings: Any):
    from dj_cqrs import conf

    registered = []

    def use(cls: type[MemoryTransport]) -> None:
        register_transport(cls)
        registered.append(cls.name)
        settings.CQRS = {**settings.CQRS, "transport": cls.name, "url": "memory://ops_tests"}
        conf.reset_transport()

    yield use
    for name in registered:
        unregister_transport(name)
    conf.reset_transport()


@pytest.mark.django_db
def test_a_hanging_broker_does_not_block_forever(transport_named):
    transport_named(_Hanging)
    try:
        with pytest.raises(CommandError, match="did not finish within 0.3 s"):
            run("cqrs_dead_letters", "dump", "--timeout", "0.3")
    finally:
        _Hanging.release.set()


@pytest.mark.django_db
def test_a_transport_without_dead_letters_is_a_clear_error(transport_named):
    transport_named(_NoDeadLetters)
    with pytest.raises(
        CommandError, match="Cannot dump dead letters: the 'no_dl' transport does not keep"
    ):
        run("cqrs_dead_letters", "dump")


def test_bad_arguments():
    with pytest.raises(CommandError, match="--limit must be a positive number"):
        run("cqrs_dead_letters", "retry", "--limit", "0")
    with pytest.raises(CommandError, match="invalid choice: 'list'"):
        run("cqrs_dead_letters", "list")


def test_transports_lists_installed_ones():
    out, _ = run("cqrs_transports")
    memory = [line for line in out.splitlines() if line.startswith("memory ")]
    assert len(memory) == 1
    assert "cqrs-core " in memory[0] and "cqrs_core.transports.memory:MemoryTransport" in memory[0]
    assert "Configured: CQRS['transport'] = 'memory'" in out


def test_transports_check_reports_ok():
    out, _ = run("cqrs_transports", "--check")
    memory = [line for line in out.splitlines() if line.startswith("memory ")]
    assert memory[0].endswith("  ok")
    assert "  ok: cqrs_core.transports.memory.MemoryTransport" in out


def test_transports_check_fails_for_a_broken_configured_transport(settings):
    settings.CQRS = {**settings.CQRS, "transport": "no.such.module.Transport"}
    with pytest.raises(CommandError, match="failed to load"):
        out = io.StringIO()
        call_command("cqrs_transports", "--check", stdout=out)
    # without --check the listing still works
    out, _ = run("cqrs_transports")
    assert "Configured: CQRS['transport'] = 'no.such.module.Transport'" in out


def test_transports_from_the_command_line():
    result = subprocess.run(
        manage("cqrs_transports", "--check"),
        env=manage_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    installed = [
        line
        for line in result.stdout.splitlines()
        if line and not line.startswith(("Configured", "  "))
    ]
    broken = [line for line in installed if "ERROR" in line]
    assert result.returncode == (1 if broken else 0), result.stdout + result.stderr
    assert any(line.startswith("memory ") for line in installed)

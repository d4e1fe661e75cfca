"""Reading and writing the line formats that connect the commands (files and pipes).

The formats are django-cqrs 3.x's, byte for byte, so a pipe or a dump file can mix services
running 3.x and this package:
- bulk dump: line 1 the CQRS_ID, then `\n` + one JSON object per row (the master's
  `to_cqrs_dict()`), without a final line end;
- diff pipeline: line 1 `CQRS_ID,timestamp` from `cqrs_diff_master`, to which
  `cqrs_diff_replica` appends `,queue` (its own `CQRS['queue']`, `None` when unset); then one
  JSON list per line;
- deleted-diff pipeline: line 1 `CQRS_ID,timestamp`, then one JSON list of primary keys per line.

JSON is compact ASCII with `/` escaped (what 3.x's ujson writes; `cqrs_core.codec.dumps`).
Timestamps are `str(datetime)` (a space between date and time), as 3.x prints them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import IO, Any

from django.core.management.base import CommandError

from cqrs_core import codec
from dj_cqrs.constants import NO_QUEUE  # line 1 of cqrs_diff_replica when CQRS['queue'] is unset


def dumps(value: Any) -> str:
    """One line of data in the wire JSON form (dates, UUIDs and Decimals as the wire has them)."""
    return codec.dumps(value)


def input_stream(command: Any, options: dict[str, Any], path: str | None = None) -> IO[str]:
    """The file at `path`, or stdin for `-`/None (`stdin=` in `call_command` replaces stdin)."""
    if path is None or path == "-":
        return options.get("stdin") or sys.stdin
    try:
        return open(path, encoding="utf-8")  # closed by the caller
    except OSError as exc:
        raise CommandError(f"Cannot read {path!r}: {exc.strerror or exc}.") from None


def read_header(stream: IO[str], what: str, *, empty: str = "Wrong CQRS ID: !") -> str:
    """Line 1 without its line end (CommandError when the input is empty).

    Args:
        empty: The first line of the error, 3.x's text for this case (a 3.x pipe stage reading
            nothing reports the empty CQRS_ID).
    """
    line = stream.readline()
    if not line.strip():
        raise CommandError(
            f"{empty}\nThe input is empty: expected {what} on line 1. Check the previous command "
            "of the pipe (it may have failed, or found no rows) or the file name."
        )
    return line.strip()


def header_cqrs_id(line: str) -> str:
    """The CQRS_ID of a pipe's line 1 (`CQRS_ID` or `CQRS_ID,timestamp[,...]`)."""
    return line.split(",")[0].strip()


class DiffHeader:
    """Line 1 of the diff pipeline: `CQRS_ID,timestamp[,queue]`.

    As in 3.x the queue is the last field when there are three or more (the replica appends it
    to the master's line), and `None` means every replica.
    """

    def __init__(self, line: str) -> None:
        parts = [part.strip() for part in line.split(",")]
        self.line = line
        self.cqrs_id = parts[0]
        self.timestamp = parts[1] if len(parts) > 1 else ""
        queue = parts[-1] if len(parts) > 2 else ""
        self.queue = queue if queue and queue != NO_QUEUE else None
        if not self.cqrs_id:
            raise CommandError(
                f"Wrong CQRS ID: !\nLine 1 must be 'CQRS_ID,timestamp[,queue]' as "
                f"cqrs_diff_master and cqrs_diff_replica print it, got {line!r}."
            )


def json_lines(stream: IO[str], *, first_line: int = 2) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) of every non-blank line (CommandError on a bad line)."""
    for number, line in enumerate(stream, start=first_line):
        text = line.strip()
        if not text:
            continue
        try:
            yield number, json.loads(text)
        except ValueError as exc:
            shown = text if len(text) <= 80 else text[:77] + "..."
            raise CommandError(f"Line {number} is not valid JSON ({exc}): {shown!r}.") from None


def pk_lists(stream: IO[str]) -> Iterator[tuple[int, list[Any]]]:
    """Lines that are JSON lists of primary keys."""
    for number, value in json_lines(stream):
        if not isinstance(value, list) or any(isinstance(v, (list, dict)) for v in value):
            raise CommandError(
                f"Line {number} must be a JSON list of primary keys, got {_short(value)}."
            )
        yield number, value


def pk_revision_lists(stream: IO[str]) -> Iterator[tuple[int, list[tuple[Any, int]]]]:
    """Lines that are JSON lists of `[pk, cqrs_revision]` pairs (cqrs_diff_master output)."""
    for number, value in json_lines(stream):
        pairs: list[tuple[Any, int]] = []
        ok = isinstance(value, list)
        for item in value if ok else ():
            if (
                not isinstance(item, list)
                or len(item) != 2
                or not isinstance(item[1], int)
                or isinstance(item[1], bool)
            ):
                ok = False
                break
            pairs.append((item[0], item[1]))
        if not ok:
            raise CommandError(
                f"Line {number} must be a JSON list of [pk, cqrs_revision] pairs as "
                f"cqrs_diff_master prints them, got {_short(value)}."
            )
        yield number, pairs


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def to_pk(model: Any, value: Any, line: int) -> Any:
    """`value` as `model`'s primary key (so `5`, `"5"` and UUID strings compare equal)."""
    from django.core.exceptions import ValidationError

    try:
        return model._meta.pk.to_python(value)
    except (ValidationError, TypeError, ValueError):
        raise CommandError(
            f"Line {line}: {value!r} is not a valid primary key of {model.__name__}."
        ) from None

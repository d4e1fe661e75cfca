"""Reading the Markdown docs in tests (`tests/tooling/test_docs_*.py`)."""

from __future__ import annotations

import re

_HEADING = re.compile(r"^(#+)\s+(.*)$")


def headings(text: str) -> list[tuple[str, list[str]]]:
    """Every heading of `text` with the lines under it (its nested headings included)."""
    lines = text.splitlines()
    found: list[tuple[str, list[str]]] = []
    for start, line in enumerate(lines):
        match = _HEADING.match(line)
        if not match:
            continue
        level = len(match.group(1))
        body = []
        for other in lines[start + 1 :]:
            deeper = _HEADING.match(other)
            if deeper and len(deeper.group(1)) <= level:
                break
            body.append(other)
        found.append((match.group(2), body))
    return found

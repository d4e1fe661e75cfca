"""`python -m cqrs_core transports [--check]`: list installed transports."""

from __future__ import annotations

import sys

from cqrs_core.transports import available_transports, get_transport_class, origin


def list_transports(check: bool = False) -> list[str]:
    """One line per installed transport: name, distribution and version, target, status."""
    lines = []
    for name, ep in sorted(available_transports().items()):  # listing never imports a plugin
        status = ""
        if check:
            try:
                get_transport_class(name)
                status = "  ok"
            except Exception as exc:  # noqa: BLE001 (report it; never crash the listing)
                status = "  ERROR: " + str(exc).replace("\n", " ")
        lines.append(f"{name:<14} {origin(ep):<28} {ep.value}{status}")
    return lines


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "transports":
        print("usage: python -m cqrs_core transports [--check]", file=sys.stderr)
        return 2
    lines = list_transports(check="--check" in argv)
    print("\n".join(lines) if lines else "no transports installed")
    return 1 if any("ERROR" in line for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

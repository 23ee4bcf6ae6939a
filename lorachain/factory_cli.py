"""`lorachain factory ...` commands (filled in by the attribution work)."""

from __future__ import annotations

from typing import Any


def add_commands(sub: Any) -> None:
    """Register the `factory` subcommands on the top-level parser's subparsers."""

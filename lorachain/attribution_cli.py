"""`lorachain attribution ...` commands (filled in by the attribution work)."""

from __future__ import annotations

from typing import Any


def add_commands(sub: Any) -> None:
    """Register the `attribution` subcommands on the top-level parser's subparsers."""

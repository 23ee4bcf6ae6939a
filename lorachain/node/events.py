"""In-process publish/subscribe for chain events (new heads, logs, pending transactions)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Listener = Callable[[Any], None]


class EventBus:
    """Topics: ``"block"`` (a BuiltBlock-like record), ``"pending_tx"`` (tx hash), ``"reorg"``."""

    def __init__(self) -> None:
        self._listeners: dict[str, dict[int, Listener]] = {}
        self._next_id = 0

    def subscribe(self, topic: str, listener: Listener) -> int:
        self._next_id += 1
        self._listeners.setdefault(topic, {})[self._next_id] = listener
        return self._next_id

    def unsubscribe(self, token: int) -> None:
        for listeners in self._listeners.values():
            listeners.pop(token, None)

    def publish(self, topic: str, payload: Any) -> None:
        for listener in list(self._listeners.get(topic, {}).values()):
            try:
                listener(payload)
            except Exception:  # a broken subscriber must not break block production
                log.exception("event listener for %s failed", topic)

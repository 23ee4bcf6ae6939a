"""Test-only faults of a lying sequencer that live outside the block builder (``lorachain node --fault``).

``tamper-state`` is the node's own (:mod:`lorachain.node.node`); the batcher's faults are the batcher's
(:mod:`batcher`). Here: ``tamper-ai-output``, the sequencer's inference sidecar client wrapped so that every
generation comes back with one output token changed before the precompile writes it into its result (and so
into state and logs). The validator, re-executing with its own sidecar, must catch it.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

log = logging.getLogger("lorachain.faults")


class TamperedInference:
    """A sidecar client whose generations have the token in the middle of the output changed (to one that
    decodes to different text), everything else passed through."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def generate(self, request: Any) -> Any:
        result = self._client.generate(request)
        ids = list(result.output_ids)
        if not ids:
            return result
        tokenizer = self._client.tokenizer()
        vocab = tokenizer.get_vocab_size()
        position, original = len(ids) // 2, tokenizer.decode(ids)
        for step in range(1, vocab):
            ids[position] = (result.output_ids[position] + step) % vocab
            if tokenizer.decode(ids) != original:
                break
        log.warning("fault tamper-ai-output: output token %d changed from %d to %d", position,
                    result.output_ids[position], ids[position])  # fmt: skip
        return dataclasses.replace(result, output_ids=tuple(ids))

"""The fast float engine: transformers + peft, for off-chain serving. Never used for consensus.

It loads the float checkpoint (not the exact artifact) with ``transformers`` and LoRA adapters with
``peft``, and serves batches that mix adapters with peft's per-row ``adapter_names``. Its outputs may
differ from the exact engine's (and between machines); ``scripts/bench/sidecar`` measures by how much.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import LlamaForCausalLM

BASE = "__base__"  # peft's name for "no adapter" in a mixed batch


class FloatEngine:
    """Greedy float32 generation for a checkpoint folder and any number of named peft adapters."""

    def __init__(self, model_dir: str | Path, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.base = LlamaForCausalLM.from_pretrained(str(model_dir), local_files_only=True, dtype=torch.float32)
        self.base.to(self.device).eval()
        self.model = self.base  # becomes a PeftModel once an adapter is loaded
        self.adapters: set[str] = set()

    def load_adapter(self, adapter_id: str, path: str | Path) -> None:
        """Load a peft adapter folder under ``adapter_id``."""
        from peft import PeftModel

        if adapter_id in self.adapters:
            return
        if not self.adapters:
            self.model = PeftModel.from_pretrained(self.base, str(path), adapter_name=adapter_id).eval()
        else:
            self.model.load_adapter(str(path), adapter_name=adapter_id)
        self.adapters.add(adapter_id)

    def _adapter_kwargs(self, adapter_ids: list[str | None]) -> dict:
        if not self.adapters:
            if any(a is not None for a in adapter_ids):
                raise KeyError("no adapters loaded")
            return {}
        unknown = {a for a in adapter_ids if a is not None and a not in self.adapters}
        if unknown:
            raise KeyError(f"unknown adapters: {sorted(unknown)}")
        return {"adapter_names": [BASE if a is None else a for a in adapter_ids]}

    @torch.inference_mode()
    def generate(self, prompts: list[list[int]], adapter_ids: list[str | None], max_new_tokens: int) -> list[list[int]]:
        """Exactly ``max_new_tokens`` greedy tokens per prompt (left-padded batch, KV cache)."""
        width = max(len(p) for p in prompts)
        ids = torch.zeros(len(prompts), width, dtype=torch.long)
        mask = torch.zeros(len(prompts), width, dtype=torch.long)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt) :] = torch.tensor(prompt)
            mask[row, width - len(prompt) :] = 1
        out = self.model.generate(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=0,
            **self._adapter_kwargs(adapter_ids),
        )
        return [row[width:].tolist() for row in out.cpu()]

    @torch.inference_mode()
    def logits(self, token_ids: list[int], adapter_id: str | None = None) -> torch.Tensor:
        """Float logits at every position of one sequence: [T, vocab]."""
        ids = torch.tensor([token_ids], device=self.device)
        return self.model(input_ids=ids, **self._adapter_kwargs([adapter_id])).logits[0].float().cpu()

"""The fast float engine: transformers + peft, for off-chain serving. Never used for consensus.

It loads the float checkpoint (not the exact artifact) with ``transformers`` and LoRA adapters with
``peft``, and serves batches that mix adapters with peft's per-row ``adapter_names``. Its outputs may
differ from the exact engine's (and between machines); ``scripts/bench/sidecar`` measures by how much.

Greedy decoding follows :meth:`lorachain.sidecar.float_model.LlamaModel.greedy_generate`: argmax with the
lowest id winning ties, stop after a token in ``stop_ids`` or when the context is full. Batches are
left-padded with an attention mask and decoded with a KV cache.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn
from transformers import LlamaForCausalLM

from lorachain.sidecar.types import IncompatibleAdapterError, RequestError, UnknownAdapterError

BASE = "__base__"  # peft's name for "no adapter" in a mixed batch
PAD_ID = 0  # any id works: padded positions are masked out
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
LORA_KEY_RE = re.compile(r"base_model\.model\.(?P<module>.+)\.lora_(?P<part>[AB])\.weight")


class FloatEngine:
    """Greedy float32 inference for a checkpoint folder and any number of named peft LoRA adapters."""

    def __init__(self, model_dir: str | Path, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.base = LlamaForCausalLM.from_pretrained(str(model_dir), local_files_only=True, dtype=torch.float32)
        self.base.to(self.device).eval()
        self.context = int(self.base.config.max_position_embeddings)
        # (in_features, out_features) of every linear layer, read before peft wraps any of them.
        self.linear_shapes = {
            name: (m.in_features, m.out_features) for name, m in self.base.named_modules() if isinstance(m, nn.Linear)
        }
        self.model: nn.Module = self.base  # becomes a PeftModel once an adapter is loaded
        self.adapters: dict[str, str] = {}  # adapter id -> its name inside peft
        self._loaded = 0  # adapters loaded so far, for fresh peft names

    # --- adapters ----------------------------------------------------------------------------------

    def load_adapter(self, adapter_id: str, path: str | Path) -> None:
        """Load the peft LoRA folder at ``path`` under ``adapter_id`` (a no-op if that id is loaded).

        Raises :class:`IncompatibleAdapterError` when the folder is not a LoRA adapter for this model.
        """
        from peft import PeftModel  # imported lazily: peft is slow to import and only needed with adapters

        if not adapter_id or adapter_id == BASE:
            raise RequestError(f"adapter id {adapter_id!r} is reserved or empty")
        if adapter_id in self.adapters:
            return
        check_lora_folder(Path(path), self.linear_shapes)
        # peft names become module names, which must not hold "."; ids can be anything, so map them.
        name = f"lora{self._loaded}"
        try:
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(path), adapter_name=name)
            else:
                self.model = PeftModel.from_pretrained(self.base, str(path), adapter_name=name)
        except (ValueError, RuntimeError, KeyError) as exc:  # what peft raises for a mismatched adapter
            raise IncompatibleAdapterError(f"adapter {adapter_id!r} at {path} does not fit the model: {exc}") from exc
        self.model.eval()
        self._loaded += 1
        self.adapters[adapter_id] = name

    def unload_adapter(self, adapter_id: str) -> None:
        """Forget a loaded adapter and free its weights."""
        if adapter_id not in self.adapters:
            raise UnknownAdapterError(f"adapter {adapter_id!r} is not loaded")
        name = self.adapters.pop(adapter_id)
        if not self.adapters:  # peft cannot run with no adapter at all: take the LoRA layers out again
            self.base = self.model = self.model.unload()
            return
        with warnings.catch_warnings():  # peft warns that the active adapter changes; we never rely on it
            warnings.filterwarnings("ignore", message=".*was active which is now deleted")
            self.model.delete_adapter(name)

    # --- inference ---------------------------------------------------------------------------------

    @torch.inference_mode()
    def generate(
        self,
        prompts: list[list[int]],
        adapter_ids: list[str | None],
        max_new_tokens: int,
        stop_ids: tuple[int, ...] = (),
    ) -> list[list[int]]:
        """Up to ``max_new_tokens`` greedy tokens per prompt, each row with its own adapter (None = base).

        A row ends early after emitting a token in ``stop_ids`` (kept in its output) or when its context
        is full; the batch ends when every row has.
        """
        self._check_batch(prompts, adapter_ids)
        if max_new_tokens < 0:
            raise RequestError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        budgets = [min(max_new_tokens, self.context - len(p)) for p in prompts]
        outputs: list[list[int]] = [[] for _ in prompts]
        if max(budgets) == 0:
            return outputs
        stops = set(stop_ids)
        adapters = self._adapter_kwargs(adapter_ids)
        ids, mask = self._left_pad(prompts)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                         logits_to_keep=1, **adapters)  # fmt: skip
        live = [budget > 0 for budget in budgets]
        while True:
            tokens = out.logits[:, -1].argmax(dim=-1)  # argmax returns the first (lowest) maximal id
            for row, token in enumerate(tokens.tolist()):
                if live[row]:
                    outputs[row].append(token)
                    live[row] = len(outputs[row]) < budgets[row] and token not in stops
            if not any(live):
                return outputs
            mask = torch.cat([mask, mask.new_ones(len(prompts), 1)], dim=1)
            positions = positions[:, -1:] + 1
            out = self.model(input_ids=tokens[:, None], attention_mask=mask, position_ids=positions,
                             past_key_values=out.past_key_values, use_cache=True, **adapters)  # fmt: skip

    @torch.inference_mode()
    def next_token_logits(self, ids_batch: list[list[int]], adapter_ids: list[str | None]) -> torch.Tensor:
        """Float logits [B, vocab] for the token after each sequence, each row with its own adapter."""
        self._check_batch(ids_batch, adapter_ids)
        ids, mask = self._left_pad(ids_batch)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False,
                         logits_to_keep=1, **self._adapter_kwargs(adapter_ids))  # fmt: skip
        return out.logits[:, -1].float().cpu()

    @torch.inference_mode()
    def logits(self, token_ids: list[int], adapter_id: str | None = None) -> torch.Tensor:
        """Float logits at every position of one sequence: [T, vocab]."""
        self._check_batch([token_ids], [adapter_id])
        ids = torch.tensor([token_ids], device=self.device)
        return self.model(input_ids=ids, **self._adapter_kwargs([adapter_id])).logits[0].float().cpu()

    def perplexity(self, token_ids: list[int], adapter_id: str | None = None) -> float:
        """exp of the mean next-token cross-entropy over ``token_ids[1:]``.

        Sequences longer than the context are scored in windows of the context length that overlap by
        one token, so every token after the first is predicted exactly once.
        """
        if len(token_ids) < 2:
            raise RequestError("perplexity needs at least 2 tokens")
        total, count = 0.0, 0
        for start in range(0, len(token_ids) - 1, self.context - 1):
            window = token_ids[start : start + self.context]
            logits = self.logits(window, adapter_id)
            targets = torch.tensor(window[1:])
            total += F.cross_entropy(logits[:-1].double(), targets, reduction="sum").item()
            count += len(targets)
        return math.exp(total / count)

    # --- helpers -----------------------------------------------------------------------------------

    def _check_batch(self, sequences: list[list[int]], adapter_ids: list[str | None]) -> None:
        if not sequences:
            raise RequestError("empty batch")
        if len(sequences) != len(adapter_ids):
            raise RequestError(f"{len(sequences)} sequences but {len(adapter_ids)} adapter ids")
        vocab = self.base.config.vocab_size
        for seq in sequences:
            if not seq:
                raise RequestError("empty token sequence")
            if len(seq) > self.context:
                raise RequestError(f"{len(seq)} tokens exceed the context of {self.context}")
            if min(seq) < 0 or max(seq) >= vocab:
                raise RequestError(f"token ids must be in [0, {vocab})")

    def _adapter_kwargs(self, adapter_ids: list[str | None]) -> dict:
        unknown = sorted({a for a in adapter_ids if a is not None and a not in self.adapters})
        if unknown:
            raise UnknownAdapterError(f"unknown adapter(s): {', '.join(map(repr, unknown))}")
        if not self.adapters:
            return {}
        return {"adapter_names": [BASE if a is None else self.adapters[a] for a in adapter_ids]}

    def _left_pad(self, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), PAD_ID, dtype=torch.long)
        mask = torch.zeros(len(sequences), width, dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, width - len(seq) :] = torch.tensor(seq)
            mask[row, width - len(seq) :] = 1
        return ids.to(self.device), mask.to(self.device)


def check_lora_folder(path: Path, linear_shapes: dict[str, tuple[int, int]]) -> None:
    """Raise :class:`IncompatibleAdapterError` unless ``path`` holds plain LoRA weights that fit the linear
    layers ``linear_shapes`` (module name -> (in_features, out_features)) of the base model."""
    config_file, weights_file = path / ADAPTER_CONFIG, path / ADAPTER_WEIGHTS
    for file in (config_file, weights_file):
        if not file.is_file():
            raise IncompatibleAdapterError(f"{path} is not a peft adapter folder: missing {file.name}")
    try:
        with safe_open(weights_file, framework="pt") as f:
            shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises several types for truncated or garbled files
        raise IncompatibleAdapterError(f"{weights_file} is not a valid safetensors file: {exc}") from exc
    ranks: dict[str, dict[str, int]] = {}
    for name, shape in sorted(shapes.items()):
        match = LORA_KEY_RE.fullmatch(name)
        if match is None:
            raise IncompatibleAdapterError(
                f"{weights_file.name}: tensor {name} is not a LoRA A/B matrix of a linear layer"
            )
        module, part = match["module"], match["part"]
        if module not in linear_shapes:
            raise IncompatibleAdapterError(
                f"{weights_file.name}: tensor {name} targets {module}, not in the base model"
            )
        fan_in, fan_out = linear_shapes[module]
        if len(shape) != 2 or (part == "A" and shape[1] != fan_in) or (part == "B" and shape[0] != fan_out):
            expected = f"[rank, {fan_in}]" if part == "A" else f"[{fan_out}, rank]"
            raise IncompatibleAdapterError(
                f"{weights_file.name}: tensor {name} has shape {list(shape)}, expected {expected} for the base model"
            )
        ranks.setdefault(module, {})[part] = shape[0] if part == "A" else shape[1]
    if not ranks:
        raise IncompatibleAdapterError(f"{weights_file.name} holds no LoRA weights")
    for module, parts in ranks.items():
        if set(parts) != {"A", "B"} or parts["A"] != parts["B"]:
            raise IncompatibleAdapterError(f"{weights_file.name}: LoRA A and B of {module} missing or of unequal rank")

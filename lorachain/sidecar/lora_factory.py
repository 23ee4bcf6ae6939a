"""Seeded peft LoRA adapters for a checkpoint, for tests and benchmarks.

:class:`LoraFactory` loads the base model once and wraps it with ``peft.get_peft_model``; each
:meth:`LoraFactory.make` re-initializes the LoRA matrices from its seed and saves a peft folder
(``adapter_config.json`` + ``adapter_model.safetensors``). With ``train_steps=0`` both A and B are
random, so the adapter changes the model's outputs without training; with ``train_steps > 0`` B starts
at zero (as in LoRA training) and the adapter is fine-tuned briefly with AdamW on ``texts``. Equal
arguments give equal weights.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from transformers import LlamaForCausalLM

from lorachain.sidecar.checkpoint import TOKENIZER_FILE
from lorachain.sidecar.corpus import text_token_ids

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Std of the random B matrices when not training. A is N(0, 1/fan_in), so with rank 16 and alpha 32 a
# linear layer's LoRA output has about 8 * INIT_STD times the RMS of its input: on the devnet model this
# flips some greedy continuations and keeps the text fluent (perplexity rises by roughly a tenth).
DEFAULT_INIT_STD = 0.002
ADAPTER_NAME = "default"  # peft saves only the "default" adapter at the top of the output folder


class LoraFactory:
    """A base model loaded once, turned into any number of seeded LoRA adapters."""

    def __init__(self, model_dir: str | Path) -> None:
        self.model_dir = Path(model_dir)
        # name_or_path (the string given here) becomes base_model_name_or_path in adapter_config.json.
        self.base = LlamaForCausalLM.from_pretrained(str(model_dir), local_files_only=True, dtype=torch.float32)
        self.base.eval()
        self.tokenizer = Tokenizer.from_file(str(self.model_dir / TOKENIZER_FILE))
        self._peft = None  # the PeftModel wrapping self.base, for the LoRA shape in self._shape
        self._shape: tuple | None = None

    def make(
        self,
        out_dir: str | Path,
        *,
        seed: int,
        rank: int = 16,
        alpha: int = 32,
        target_modules: Sequence[str] = DEFAULT_TARGETS,
        train_steps: int = 0,
        texts: Sequence[str] | None = None,
        init_std: float = DEFAULT_INIT_STD,
        learning_rate: float = 1e-3,
        batch_size: int = 8,
    ) -> Path:
        """Write one adapter into ``out_dir`` and return the folder."""
        if train_steps < 0:
            raise ValueError(f"train_steps must be >= 0, got {train_steps}")
        if train_steps and not texts:
            raise ValueError("train_steps > 0 needs texts to train on")
        model = self.peft_model(rank, alpha, tuple(target_modules))
        generator = torch.Generator().manual_seed(seed)
        init_lora_weights(model, generator, b_std=init_std if train_steps == 0 else None)
        if train_steps:
            self._train(model, texts or (), train_steps, learning_rate, batch_size, generator)
        out_dir = Path(out_dir)
        model.save_pretrained(str(out_dir))
        return out_dir

    def peft_model(self, rank: int, alpha: int, targets: tuple[str, ...]):
        """The base wrapped with LoRA layers of this shape (one PeftModel, rebuilt when the shape changes);
        its LoRA weights are whatever the last user left: set them with :func:`init_lora_weights`."""
        from peft import LoraConfig, get_peft_model  # imported lazily: peft is slow to import

        targets = tuple(targets)
        shape = (rank, alpha, targets)
        if self._peft is None or self._shape != shape:
            if self._peft is not None:
                self.base = self._peft.unload()  # take the old LoRA layers out before adding new ones
            config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(targets), lora_dropout=0.0,
                                bias="none", task_type="CAUSAL_LM")  # fmt: skip
            with torch.random.fork_rng(devices=[]):  # peft's own init draws from the global RNG; keep it untouched
                self._peft = get_peft_model(self.base, config, adapter_name=ADAPTER_NAME)
            self._shape = shape
        return self._peft

    def _train(self, model, texts: Sequence[str], steps: int, lr: float, batch_size: int, generator) -> None:
        """AdamW on random windows of the tokenized texts (each preceded by end-of-text)."""
        tokens = torch.tensor([t for text in texts for t in text_token_ids(self.tokenizer, text)])
        seq_len = min(128, self.base.config.max_position_embeddings, len(tokens) - 1)
        if seq_len < 1:
            raise ValueError("texts are too short to train on")
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        model.train()
        try:
            for _ in range(steps):
                starts = torch.randint(0, len(tokens) - seq_len, (batch_size,), generator=generator).tolist()
                batch = torch.stack([tokens[s : s + seq_len + 1] for s in starts])
                logits = model(input_ids=batch[:, :-1]).logits
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        finally:
            model.eval()


def init_lora_weights(model, generator: torch.Generator, *, b_std: float | None = None) -> None:
    """Seed the LoRA matrices of a PeftModel from ``generator``, in parameter-name order: A ~ N(0, 1/fan_in);
    B = 0 (the LoRA training start: the adapter is the identity) or, with ``b_std``, B ~ N(0, b_std^2)."""
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if f".lora_A.{ADAPTER_NAME}." in name:
                param.normal_(0.0, param.shape[1] ** -0.5, generator=generator)
            elif f".lora_B.{ADAPTER_NAME}." in name and b_std is not None:
                param.normal_(0.0, b_std, generator=generator)
            elif f".lora_B.{ADAPTER_NAME}." in name:
                param.zero_()


def make_lora_adapter(
    base: str | Path | LoraFactory, out_dir: str | Path, *, seed: int, rank: int = 16, alpha: int = 32,
    target_modules: Sequence[str] = DEFAULT_TARGETS, train_steps: int = 0, texts: Sequence[str] | None = None,
    **options,
) -> Path:  # fmt: skip
    """One adapter for the checkpoint folder ``base`` (or a factory, to reuse its loaded model).

    ``options`` go to :meth:`LoraFactory.make` (``init_std``, ``learning_rate``, ``batch_size``).
    """
    factory = base if isinstance(base, LoraFactory) else LoraFactory(base)
    return factory.make(out_dir, seed=seed, rank=rank, alpha=alpha, target_modules=target_modules,
                        train_steps=train_steps, texts=texts, **options)  # fmt: skip


def make_lora_adapters(
    base: str | Path | LoraFactory, out_root: str | Path, count: int, *, seed: int = 0, **options
) -> list[Path]:
    """``count`` adapters in ``out_root/adapter-0000`` ..., seeded ``seed``, ``seed + 1``, ...; the base
    model is loaded once. ``options`` are :func:`make_lora_adapter`'s keyword arguments."""
    factory = base if isinstance(base, LoraFactory) else LoraFactory(base)
    out_root = Path(out_root)
    return [factory.make(out_root / f"adapter-{i:04d}", seed=seed + i, **options) for i in range(count)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lorachain.sidecar.lora_factory", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model", type=Path, required=True, help="checkpoint folder")
    parser.add_argument("--out", type=Path, required=True, help="folder to write adapter-0000, adapter-0001, ... into")
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--alpha", type=int, default=32)
    args = parser.parse_args(argv)
    started = time.monotonic()
    folders = make_lora_adapters(args.model, args.out, args.count, seed=args.seed, rank=args.rank, alpha=args.alpha)
    print(f"{len(folders)} adapters in {args.out} ({time.monotonic() - started:.1f}s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

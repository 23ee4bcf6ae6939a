"""The exact engine: an integer-only Llama forward pass with unmerged per-request LoRA, and decoding.

Between token ids in and token ids out every value is an integer (formats in
:mod:`lorachain.sidecar.fixed_point`). Every operation is either row-wise (one token's values depend only
on that token's row: embedding, norms, quantization, requantization, RoPE, SiLU, the LoRA path) or an
exact integer reduction (attention over one sequence's own cache), so a request's tokens do not depend on
which other requests share its batch, on thread count, or on the device.

``start`` validates a request and returns a :class:`Sequence`; ``step`` advances a list of sequences by one
token each (the first step of a sequence runs its whole prompt); ``finish`` seals the result with its
commitment. ``generate`` does all three for a list of requests. ``activations`` runs one request alone
and digests its hidden state at every step and layer (format: :mod:`lorachain.sidecar.wire`), so two
machines that disagree can find the first layer they disagree on.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import torch
from tokenizers import Tokenizer

from lorachain.sidecar.adapter_store import AdapterStore
from lorachain.sidecar.adapters import QuantizedAdapter
from lorachain.sidecar.artifact import DEFAULT_CACHE, PROJECTIONS, QuantizedModel, load_model
from lorachain.sidecar.commitment import inference_commitment
from lorachain.sidecar.decoding import greedy_rows, sample
from lorachain.sidecar.exact_matmul import ExactMatmul
from lorachain.sidecar.exact_ops import select_ops
from lorachain.sidecar.fixed_point import (
    LOG2E,
    rshift_round,
)
from lorachain.sidecar.kv_cache import KVPool
from lorachain.sidecar.types import DecodingParams, GenerationRequest, GenerationResult, RequestError
from lorachain.sidecar.wire import ActivationTrace, activation_digest, activation_root

log = logging.getLogger(__name__)

MAX_CONTEXT = 1 << 15  # keeps attention sums (probabilities * values * positions) below 2^53


def tensor_digest(t: torch.Tensor) -> bytes:
    """The activation digest of an integer tensor of rows (``wire.activation_digest``): int64, little-endian,
    contiguous row-major, on the host, whatever the device and dtype it was computed in."""
    if t.dtype.is_floating_point or t.dtype.is_complex:
        raise TypeError(f"activation digests are of integer tensors, not {t.dtype}")
    rows = t.reshape(t.shape[0], -1).to(device="cpu", dtype=torch.int64).contiguous()
    data = rows.numpy().astype("<i8", copy=False).tobytes()
    return activation_digest(rows.shape[0], rows.shape[1], data)


@dataclass
class Sequence:
    """One request in flight: its tokens so far and its key/value cache."""

    request: GenerationRequest
    adapter: QuantizedAdapter | None
    tokens: list[int]
    output_ids: list[int] = field(default_factory=list)
    cached: int = 0  # tokens whose keys and values are in the cache
    slot: int = -1  # this sequence's slot in the engine's KV pool
    release: Callable[[], None] = lambda: None  # gives the slot back (once; also when the sequence is dropped)
    done: bool = False
    finish_reason: str | None = None

    @property
    def adapter_hashes(self) -> tuple[bytes, ...]:
        return () if self.adapter is None else (self.adapter.hash,)


@dataclass
class _Linear:
    weight: torch.Tensor  # int8 values in the matmul dtype, [N, K]
    c: torch.Tensor  # int64 [N]
    shift: int
    bias: torch.Tensor | None


class _LoraBatch:
    """The adapters of one batch composition, laid side by side per module (Punica-style segmented LoRA).

    Per module, A of every adapter is stacked into one [slots * r, in] matrix and B into one
    [out, slots * r] matrix (slot 0 is "no adapter", all zeros; smaller ranks are zero-padded). A row's
    LoRA term is then two ordinary GEMMs: ``x @ A_all.T`` from which the row keeps its own slot's r
    values, and ``t_sparse @ B_all.T`` where ``t_sparse`` is zero outside the row's slot. Zeros add
    exactly nothing, so each row gets the same integers as it would alone.
    """

    def __init__(self, adapters: list[QuantizedAdapter], mm: ExactMatmul, device: torch.device) -> None:
        self.adapters = adapters
        self.modules: dict[tuple[int, str], tuple] = {}
        keys = sorted({key for a in adapters for key in a.modules})
        for key in keys:
            pairs = [a.modules.get(key) for a in adapters]
            present = [p for p in pairs if p is not None]
            rank = max(p[0].q.shape[0] for p in present)
            fan_in, fan_out = present[0][0].q.shape[1], present[0][1].q.shape[0]
            slots = len(adapters) + 1  # slot 0: no adapter (zeros)
            a_q = torch.zeros(slots, rank, fan_in, dtype=mm.dtype, device=device)
            a_c = torch.zeros(slots, rank, dtype=torch.int64, device=device)
            b_q = torch.zeros(fan_out, slots, rank, dtype=mm.dtype, device=device)
            b_c = torch.zeros(slots, fan_out, dtype=torch.int64, device=device)
            a_shift = torch.zeros(slots, dtype=torch.int64, device=device)
            b_shift = torch.zeros(slots, dtype=torch.int64, device=device)
            for i, pair in enumerate(pairs, start=1):
                if pair is None:
                    continue
                a, b = pair
                r = a.q.shape[0]
                a_q[i, :r], a_c[i, :r], a_shift[i] = a.q.to(device, mm.dtype), a.c.to(device), a.shift
                b_q[:, i, :r], b_c[i], b_shift[i] = b.q.to(device, mm.dtype), b.c.to(device), b.shift
            a_all = a_q.reshape(slots * rank, fan_in)
            b_all = b_q.reshape(fan_out, slots * rank)
            b_rows = b_q.permute(1, 2, 0).contiguous()  # [slots, r, out]: each adapter's B.T, for per-row kernels
            self.modules[key] = (a_all, a_c, a_shift, b_all, b_c, b_shift, slots, rank, b_rows)

    def apply(self, key, slots, qx, mantissa, exponent, mm: ExactMatmul, ops) -> torch.Tensor | None:
        """The LoRA term ``scaling * B (A x)`` for each row (zero for rows in slot 0), in F_HIDDEN."""
        module = self.modules.get(key)
        if module is None:
            return None
        return ops.lora_delta(qx, slots, module, mantissa, exponent, mm)


class ExactEngine:
    """Integer inference for one quantized model and its adapter store, on one device."""

    def __init__(
        self,
        model: QuantizedModel,
        store: AdapterStore,
        device: torch.device | str = "cpu",
        max_new_tokens_limit: int = 1024,
    ) -> None:
        cfg = model.config
        if cfg.max_position_embeddings > MAX_CONTEXT:
            raise ValueError(f"context {cfg.max_position_embeddings} exceeds the exact engine's {MAX_CONTEXT}")
        self.model = model
        self.config = cfg
        self.model_hash = model.hash
        self.tokenizer: Tokenizer = model.tokenizer
        self.context_length = cfg.max_position_embeddings
        self.max_new_tokens_limit = min(max_new_tokens_limit, cfg.max_position_embeddings - 1)
        self.store = store
        self.device = torch.device(device)
        self.mm = ExactMatmul(self.device)
        self.ops = select_ops(self.device, self.mm.dtype)
        t = {k: v.to(self.device) for k, v in model.tensors.items()}
        self.embed_q, self.embed_c, self.embed_shift = t["embed.q"], t["embed.c"], model.shifts["embed"]
        self.layers: list[dict[str, _Linear]] = []
        self.fused: list[dict[str, torch.Tensor]] = []
        self.norms: list[tuple[torch.Tensor, torch.Tensor]] = []
        for i in range(cfg.num_hidden_layers):
            layer = {}
            for short in PROJECTIONS:
                name = f"layers.{i}.{short}"
                layer[short] = _Linear(
                    self.mm.weights(t[f"{name}.q"]), t[f"{name}.c"], model.shifts[name], t.get(f"{name}.bias")
                )
            self.layers.append(layer)
            # One GEMM for q, k, v and one for gate, up: the rows of the stacked matrix are the same rows, so
            # each column block is exactly the separate product (requantized per block afterwards).
            self.fused.append({
                "qkv": torch.cat([layer[s].weight for s in ("q", "k", "v")]),
                "gate_up": torch.cat([layer[s].weight for s in ("gate", "up")]),
            })  # fmt: skip
            self.norms.append((t[f"layers.{i}.input_norm"], t[f"layers.{i}.post_norm"]))
        self.final_norm = t["norm"]
        self.lm_head = _Linear(self.mm.weights(t["lm_head.q"]), t["lm_head.c"], model.shifts["lm_head"], None)
        self.rope_cos, self.rope_sin = t["rope.cos"], t["rope.sin"]
        self.eps_q40 = model.eps_q40
        # log2(e) / sqrt(head_dim) in F_EXP, correctly rounded
        self.score_multiplier = int((Decimal(LOG2E) / Decimal(cfg.head_dim).sqrt()).to_integral_value())
        self.kv = KVPool(cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.max_position_embeddings, cfg.head_dim,
                         self.device)  # fmt: skip
        self.group = cfg.num_attention_heads // cfg.num_key_value_heads
        self._lora_cache: dict[tuple[bytes, ...], _LoraBatch] = {}

    # --- requests ------------------------------------------------------------------------------------

    def start(self, request: GenerationRequest) -> Sequence:
        """Validate ``request`` and return its sequence, ready for :meth:`step`."""
        adapter = self.validate(request)
        seq = Sequence(request=request, adapter=adapter, tokens=list(request.prompt_ids))
        seq.slot = self.kv.acquire()
        seq.release = weakref.finalize(seq, self.kv.release, seq.slot)
        return seq

    def validate(self, request: GenerationRequest) -> QuantizedAdapter | None:
        """Raise the :class:`SidecarError` that ``request`` deserves, if any; return its adapter."""
        params = request.params
        params.validate(self.max_new_tokens_limit)
        prompt = request.prompt_ids
        vocab = self.config.vocab_size
        if not prompt:
            raise RequestError("the prompt is empty")
        if any(not isinstance(t, int) or isinstance(t, bool) or not 0 <= t < vocab for t in prompt):
            raise RequestError(f"prompt token ids must be integers in 0..{vocab - 1}")
        if any(not isinstance(t, int) or not 0 <= t < vocab for t in params.stop_ids):
            raise RequestError(f"stop ids must be integers in 0..{vocab - 1}")
        if len(prompt) >= self.context_length:
            raise RequestError(f"the prompt has {len(prompt)} tokens; the context holds {self.context_length}")
        if len(prompt) + params.max_new_tokens > self.context_length:
            raise RequestError(
                f"prompt ({len(prompt)} tokens) plus max_new_tokens ({params.max_new_tokens}) exceeds the "
                f"context of {self.context_length} tokens"
            )
        return self.store.get(request.adapter_id) if request.adapter_id is not None else None

    def finish(self, seq: Sequence) -> GenerationResult:
        seq.release()
        req = seq.request
        commitment = inference_commitment(
            self.model_hash, seq.adapter_hashes, req.prompt_ids, seq.output_ids, req.params
        )
        return GenerationResult(
            output_ids=tuple(seq.output_ids),
            finish_reason=seq.finish_reason or "length",
            commitment=commitment,
            model_hash=self.model_hash,
            adapter_hashes=seq.adapter_hashes,
            prompt_tokens=len(req.prompt_ids),
        )

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """Run ``requests`` together to completion."""
        seqs = [self.start(r) for r in requests]
        while not all(s.done for s in seqs):
            self.step(seqs)
        return [self.finish(s) for s in seqs]

    @torch.inference_mode()
    def activations(self, request: GenerationRequest) -> ActivationTrace:
        """Generate ``request`` alone, digesting every step's hidden states: per step, the embedding output,
        each layer's output and the logits. The tokens and commitment are :meth:`generate`'s (rows do not
        depend on their batch)."""
        seq = self.start(request)
        hashes: list[tuple[bytes, ...]] = []
        while not seq.done:
            row: list[bytes] = []
            self.step([seq], digests=row)
            hashes.append(tuple(row))
        return ActivationTrace(self.finish(seq), tuple(hashes), activation_root(hashes))

    def info(self) -> dict:
        cfg = self.config
        return {
            "model_hash": "0x" + self.model_hash.hex(),
            "config": cfg.to_json(),
            "vocab_size": cfg.vocab_size,
            "context_length": self.context_length,
            "max_new_tokens": self.max_new_tokens_limit,
            "device": str(self.device),
            "matmul_dtype": str(self.mm.dtype).removeprefix("torch."),
            "parameters": sum(t.numel() for name, t in self.model.tensors.items() if name.endswith(".q")),
        }

    # --- the forward pass ----------------------------------------------------------------------------

    @torch.inference_mode()
    def step(self, seqs: list[Sequence], digests: list[bytes] | None = None) -> None:
        """Advance every unfinished sequence by one token (``digests``: see :meth:`forward`)."""
        active = [s for s in seqs if not s.done]
        if not active:
            return
        logits = self.forward(active, digests=digests)
        greedy_tokens = greedy_rows(logits).tolist()  # one device sync for the whole batch
        for seq, row, greedy_token in zip(active, logits, greedy_tokens, strict=True):
            params = seq.request.params
            token = greedy_token if params.temperature_milli == 0 else sample(row, params, len(seq.output_ids))
            seq.tokens.append(token)
            seq.output_ids.append(token)
            if token in seq.request.params.stop_ids:
                seq.done, seq.finish_reason = True, "stop"
            elif len(seq.output_ids) >= seq.request.params.max_new_tokens or len(seq.tokens) >= self.context_length:
                seq.done, seq.finish_reason = True, "length"
            if seq.done:
                seq.release()

    @torch.inference_mode()
    def score(self, token_ids: list[int], adapter_id: str | None = None) -> torch.Tensor:
        """Integer logits (F_HIDDEN) at every position of ``token_ids``: row i predicts token i + 1."""
        request = GenerationRequest(tuple(token_ids), adapter_id, DecodingParams(max_new_tokens=1))
        seq = self.start(request)
        return self.forward([seq], all_positions=True)

    @torch.inference_mode()
    def trace(self, token_ids: list[int], adapter_id: str | None = None) -> dict[str, torch.Tensor]:
        """:meth:`score` plus the integers attribution differentiates through: ``logits`` (every position,
        F_HIDDEN), ``down_in`` (the last layer's quantized down-projection input ``(q, mantissa, exponent)``)
        and ``hidden`` (the residual stream before the final norm, F_HIDDEN)."""
        request = GenerationRequest(tuple(token_ids), adapter_id, DecodingParams(max_new_tokens=1))
        seq = self.start(request)
        capture: dict = {}
        capture["logits"] = self.forward([seq], all_positions=True, capture=capture)
        return capture

    def forward(
        self, seqs: list[Sequence], all_positions: bool = False, capture: dict | None = None,
        digests: list[bytes] | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """Run every sequence's uncached tokens; return the last position's logits per sequence (F_HIDDEN),
        or with ``all_positions`` the logits of every new row. ``capture`` receives :meth:`trace`'s tensors;
        ``digests`` the digests of the embedding output, of each layer's output and of the returned logits
        (over all the batch's rows: :meth:`activations` runs one sequence)."""
        cfg = self.config
        ids, positions, spans, row_slots = [], [], [], []
        for seq in seqs:
            new = seq.tokens[seq.cached :]
            spans.append((len(ids), len(new)))
            ids.extend(new)
            positions.extend(range(seq.cached, seq.cached + len(new)))
            row_slots.extend([seq.slot] * len(new))
        ids_t = torch.tensor(ids, dtype=torch.int64, device=self.device)
        pos_t = torch.tensor(positions, dtype=torch.int64, device=self.device)
        slots_t = torch.tensor(row_slots, dtype=torch.int64, device=self.device)
        rows_slot, lora = self._lora_rows(seqs, spans)
        ops, eps = self.ops, self.eps_q40
        x = rshift_round(self.embed_q[ids_t].to(torch.int64) * self.embed_c[ids_t][:, None], self.embed_shift)
        head_dim = cfg.head_dim
        if digests is not None:
            digests.append(tensor_digest(x))

        def project(layer: int, short: str, qx, m, e, acc=None) -> tuple:
            """One projection's GEMM result (or its block ``acc`` of a fused GEMM), multipliers, bias, LoRA term."""
            lin: _Linear = self.layers[layer][short]
            delta = lora.apply((layer, short), rows_slot, qx, m, e, self.mm, ops) if lora is not None else None
            if acc is None:
                acc = self.mm.product(qx, lin.weight)
            return acc, lin.c, lin.shift, m, e, lin.bias, delta

        def blocks(layer: int, fused: str, names: tuple[str, ...], qx) -> list:
            acc = self.mm.product(qx, self.fused[layer][fused])
            parts, start = [], 0
            for name in names:
                size = self.layers[layer][name].weight.shape[0]
                parts.append(acc[:, start : start + size])
                start += size
            return parts

        def heads_of(projection: tuple, rotate: bool):
            return ops.requant_heads(*projection, self.rope_cos, self.rope_sin, pos_t, head_dim, rotate)

        for i in range(len(self.layers)):
            input_norm, post_norm = self.norms[i]
            qx, m, e = ops.norm_quantize(x, input_norm, eps)
            acc_q, acc_k, acc_v = blocks(i, "qkv", ("q", "k", "v"), qx)
            q = heads_of(project(i, "q", qx, m, e, acc_q), True)
            k = heads_of(project(i, "k", qx, m, e, acc_k), True)
            v = heads_of(project(i, "v", qx, m, e, acc_v), False)
            kv = self.kv
            ops.store_kv(kv.keys, kv.values, i, slots_t, pos_t, k, v)
            attn = ops.attend(q, kv.keys, kv.values, i, slots_t, pos_t, self.group, self.score_multiplier)
            qx, m, e = ops.quantize(attn)
            x = ops.residual_add(x, *project(i, "o", qx, m, e))
            qx, m, e = ops.norm_quantize(x, post_norm, eps)
            acc_g, acc_u = blocks(i, "gate_up", ("gate", "up"), qx)
            acc_g, c_g, shift_g, _, _, _, delta_g = project(i, "gate", qx, m, e, acc_g)
            acc_u, c_u, shift_u, _, _, _, delta_u = project(i, "up", qx, m, e, acc_u)
            qx, m, e = ops.mlp_quantize((acc_g, c_g, shift_g, delta_g), (acc_u, c_u, shift_u, delta_u), m, e)
            if capture is not None and i == len(self.layers) - 1:
                capture["down_in"] = (qx.clone(), m.clone(), e.clone())
            x = ops.residual_add(x, *project(i, "down", qx, m, e))
            if digests is not None:
                digests.append(tensor_digest(x))
        for seq, (_, count) in zip(seqs, spans, strict=True):
            seq.cached += count
        if capture is not None:
            capture["hidden"] = x.clone()
        if not all_positions:
            x = x[torch.tensor([start + count - 1 for start, count in spans], device=self.device)].contiguous()
        qx, m, e = ops.norm_quantize(x, self.final_norm, eps)
        head = self.lm_head
        logits = ops.requant(self.mm.product(qx, head.weight), head.c, head.shift, m, e)
        if digests is not None:
            digests.append(tensor_digest(logits))
        return logits

    def _lora_rows(self, seqs: list[Sequence], spans) -> tuple[torch.Tensor | None, _LoraBatch | None]:
        adapters: dict[bytes, QuantizedAdapter] = {}
        for seq in seqs:
            if seq.adapter is not None:
                adapters.setdefault(seq.adapter.hash, seq.adapter)
        if not adapters:
            return None, None
        key = tuple(sorted(adapters))
        lora = self._lora_cache.get(key)
        if lora is None:
            if len(self._lora_cache) >= 8:
                self._lora_cache.pop(next(iter(self._lora_cache)))
            lora = self._lora_cache[key] = _LoraBatch([adapters[h] for h in key], self.mm, self.device)
        slot_of = {h: i + 1 for i, h in enumerate(key)}
        slots = []
        for seq, (_, count) in zip(seqs, spans, strict=True):
            slots.extend([slot_of[seq.adapter.hash] if seq.adapter is not None else 0] * count)
        return torch.tensor(slots, dtype=torch.int64, device=self.device), lora


def load_engine(
    model_dir: str | Path,
    adapters_dir: str | Path | None = None,
    device: str = "cpu",
    cache: Path = DEFAULT_CACHE,
    max_new_tokens_limit: int = 1024,
) -> ExactEngine:
    """An engine for a checkpoint folder (converted once and cached) or an artifact file."""
    model = load_model(model_dir, cache)
    directory = Path(adapters_dir) if adapters_dir else cache / "adapters" / ("0x" + model.hash.hex())
    store = AdapterStore(directory, model.config, device=device)
    log.info("model 0x%s loaded: %s", model.hash.hex(), model.config)
    return ExactEngine(model, store, device=device, max_new_tokens_limit=max_new_tokens_limit)

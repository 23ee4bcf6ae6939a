"""The vocabulary shared by the sidecar's engines, scheduler and servers: requests, results, errors."""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_STOP_IDS = 16


class SidecarError(Exception):
    """Base of errors the sidecar reports to its callers; ``status`` is the HTTP status to answer with."""

    status = 400
    code = "bad_request"


class RequestError(SidecarError):
    """A request that cannot be served as asked (too long, too many tokens, bad parameters)."""


class CheckpointError(SidecarError):
    """A checkpoint folder that cannot be used: missing file, malformed config, bad or missing tensor."""

    status = 422
    code = "bad_checkpoint"


class UnknownAdapterError(SidecarError):
    status = 404
    code = "unknown_adapter"


class UnknownRecordError(SidecarError):
    status = 404
    code = "unknown_record"


class UnknownModelError(SidecarError):
    status = 404
    code = "unknown_model"


class IncompatibleAdapterError(SidecarError):
    status = 422
    code = "incompatible_adapter"


class CorruptArtifactError(SidecarError):
    status = 422
    code = "corrupt_artifact"


@dataclass(frozen=True)
class DecodingParams:
    """How to pick each next token. All integers, so they hash and compare exactly.

    ``temperature_milli == 0`` is greedy decoding (argmax, lowest token id wins ties). Otherwise tokens are
    sampled from the integer softmax of logits / (temperature_milli / 1000), restricted to the ``top_k`` most
    likely tokens (0 = all) and to the smallest prefix whose probability reaches ``top_p_milli / 1000``,
    with randomness drawn from a counter-based RNG keyed by ``seed`` (32 bytes, e.g. from on-chain data).
    """

    max_new_tokens: int = 32
    temperature_milli: int = 0
    top_k: int = 0
    top_p_milli: int = 1000
    seed: bytes = b"\x00" * 32
    stop_ids: tuple[int, ...] = ()

    def validate(self, max_new_tokens_limit: int) -> None:
        if not 1 <= self.max_new_tokens <= max_new_tokens_limit:
            raise RequestError(
                f"max_new_tokens must be between 1 and {max_new_tokens_limit}, got {self.max_new_tokens}"
            )
        if not 0 <= self.temperature_milli <= 100_000:
            raise RequestError(f"temperature_milli must be between 0 and 100000, got {self.temperature_milli}")
        if self.top_k < 0:
            raise RequestError(f"top_k must be >= 0, got {self.top_k}")
        if not 1 <= self.top_p_milli <= 1000:
            raise RequestError(f"top_p_milli must be between 1 and 1000, got {self.top_p_milli}")
        if len(self.seed) != 32:
            raise RequestError(f"seed must be 32 bytes, got {len(self.seed)}")
        if len(self.stop_ids) > MAX_STOP_IDS:
            raise RequestError(f"at most {MAX_STOP_IDS} stop ids, got {len(self.stop_ids)}")


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt (token ids) to continue with the base model or one adapter (id = its hash, 0x-hex).

    Several adapters are combined by merging them into a new adapter first (``AdapterStore.merge``).
    """

    prompt_ids: tuple[int, ...]
    adapter_id: str | None = None
    params: DecodingParams = field(default_factory=DecodingParams)


@dataclass(frozen=True)
class GenerationResult:
    """The new tokens, why generation stopped (``"stop"`` or ``"length"``), and the commitment to it all."""

    output_ids: tuple[int, ...]
    finish_reason: str
    commitment: bytes
    model_hash: bytes
    adapter_hashes: tuple[bytes, ...]
    prompt_tokens: int

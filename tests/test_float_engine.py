"""The float engine (transformers + peft): the same model as the float reference, adapters, mixed batches."""

from __future__ import annotations

import pytest
import torch

from lorachain.sidecar.checkpoint import load_checkpoint
from lorachain.sidecar.float_engine import FloatEngine
from lorachain.sidecar.float_model import LlamaModel
from lorachain.sidecar.types import UnknownAdapterError
from tests.sidecar_fixtures import tiny_model, write_peft_adapter


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("float")
    model_dir = tiny_model(root)
    ckpt = load_checkpoint(model_dir)
    engine = FloatEngine(model_dir)
    for i in range(3):
        engine.load_adapter(f"a{i}", write_peft_adapter(root / f"a{i}", ckpt.config, rank=8, seed=i, scale=0.5))
    return engine, LlamaModel.from_checkpoint(ckpt)


def test_logits_match_the_float_reference(setup):
    engine, reference = setup
    ids = [5, 9, 2, 7, 11]
    with torch.no_grad():
        expected = reference(torch.tensor([ids]))[0]
    assert torch.allclose(engine.logits(ids), expected, atol=1e-4)


def test_adapters_change_outputs_and_mixed_batches_match_single_rows(setup):
    engine, _ = setup
    prompts = [[5, 9, 2], [7, 7, 1, 3], [4], [8, 6]]
    adapters = [None, "a0", "a1", "a2"]
    assert not torch.allclose(engine.logits(prompts[0], "a0"), engine.logits(prompts[0]))
    batch = engine.generate(prompts, adapters, 6)
    alone = [engine.generate([p], [a], 6)[0] for p, a in zip(prompts, adapters, strict=True)]
    assert batch == alone and all(len(out) == 6 for out in batch)
    with pytest.raises(UnknownAdapterError, match="unknown"):
        engine.generate(prompts[:1], ["missing"], 2)

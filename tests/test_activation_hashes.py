"""Per-layer activation hashes of the exact engine: deterministic, the same tokens as ``generate``, and
pointing at the layer whose weights differ; the wire format's round trip and malformed answers."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from lorachain.sidecar import wire
from lorachain.sidecar.checkpoint import load_checkpoint
from lorachain.sidecar.exact_engine import ExactEngine, load_engine, tensor_digest
from lorachain.sidecar.types import DecodingParams, GenerationRequest, GenerationResult, RequestError
from tests.sidecar_fixtures import tiny_model, workload, write_peft_adapter


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("activations")
    model_dir = tiny_model(root)
    config = load_checkpoint(model_dir).config
    engine = load_engine(model_dir, adapters_dir=root / "adapters", cache=root / "cache")
    adapter = engine.store.register(write_peft_adapter(root / "peft", config, rank=4, seed=1)).id
    requests = workload(engine.tokenizer, [adapter], 6, 5)  # greedy and sampled, with and without the adapter
    return {"root": root, "model_dir": model_dir, "engine": engine, "adapter": adapter, "requests": requests}


def test_hashes_match_generate_and_have_one_row_per_token(world):
    engine: ExactEngine = world["engine"]
    layers = engine.config.num_hidden_layers
    for request in world["requests"]:
        trace = engine.activations(request)
        assert trace.result == engine.generate([request])[0]  # same tokens, same commitment
        assert len(trace.hashes) == len(trace.result.output_ids)
        assert all(len(row) == layers + 2 and all(len(h) == 32 for h in row) for row in trace.hashes)
        assert trace.root == wire.activation_root(trace.hashes)
        assert all(len(set(row)) == layers + 2 for row in trace.hashes)


def test_hashes_are_deterministic_across_runs_and_engine_instances(world):
    engine = world["engine"]
    first = [engine.activations(r) for r in world["requests"]]
    assert [engine.activations(r) for r in world["requests"]] == first
    other = load_engine(world["model_dir"], adapters_dir=world["root"] / "adapters", cache=world["root"] / "cache")
    assert [other.activations(r) for r in world["requests"]] == first
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert [other.activations(r) for r in world["requests"][:2]] == first[:2]
    finally:
        torch.set_num_threads(threads)


def test_hashes_depend_on_the_adapter_and_the_prompt(world):
    engine = world["engine"]
    prompt = tuple(engine.tokenizer.encode("Alice lives in").ids)
    params = DecodingParams(max_new_tokens=3)
    base = engine.activations(GenerationRequest(prompt, None, params))
    tuned = engine.activations(GenerationRequest(prompt, world["adapter"], params))
    assert wire.first_divergence(base.hashes, tuned.hashes) == (0, 1)  # the embedding agrees, layer 0 differs
    shifted = engine.activations(GenerationRequest((*prompt[:-1], (prompt[-1] + 1) % 512), None, params))
    assert wire.first_divergence(base.hashes, shifted.hashes) == (0, 0)


@pytest.mark.parametrize("layer", [0, 1])
def test_one_changed_weight_is_found_in_its_layer(world, layer):
    """A weight of layer ``layer``'s down projection four int8 units off: the first divergent hash is that
    layer's output, nothing before it (at step 0 unless the rounding of the layer's sums absorbs the change
    for the prompt, as it does where the weight's input is near zero)."""
    engine: ExactEngine = world["engine"]
    model = engine.model
    name = f"layers.{layer}.down.q"
    request = GenerationRequest(tuple(engine.tokenizer.encode("the cat says").ids), None, DecodingParams(4))
    ours = engine.activations(request)
    found = []
    for column in range(8):
        weight = model.tensors[name].clone()
        weight[0, column] += 4 if weight[0, column] < 123 else -4
        changed = ExactEngine(dataclasses.replace(model, tensors={**model.tensors, name: weight}), engine.store)
        theirs = changed.activations(request)
        found.append(wire.first_divergence(ours.hashes, theirs.hashes))
    assert {c for _, c in filter(None, found)} == {layer + 1}  # always exactly that layer
    assert sum(f == (0, layer + 1) for f in found) >= 5  # mostly at step 0
    assert wire.column_name(layer + 1, len(ours.hashes[0])) == f"layers.{layer}"


def test_tensor_digest_is_canonical():
    values = torch.tensor([[1, -2, 3], [2**40, -(2**40), 0]], dtype=torch.int64)
    expected = wire.activation_digest(2, 3, values.numpy().astype("<i8").tobytes())
    assert tensor_digest(values) == expected
    assert tensor_digest(values.to(torch.int32).clamp(-(2**31), 2**31 - 1)) != expected  # values, not dtypes
    assert tensor_digest(values[:1].to(torch.int32)) == tensor_digest(values[:1])
    assert tensor_digest(values.t().contiguous().t()) == expected  # layout does not matter
    assert tensor_digest(values.reshape(3, 2)) != expected  # shape does
    with pytest.raises(TypeError):
        tensor_digest(values.double())


# -- wire ----------------------------------------------------------------------------------------
RESULT = GenerationResult((5, 6), "stop", b"\x01" * 32, b"\x02" * 32, (), 3)
HASHES = ((b"\x0a" * 32, b"\x0b" * 32, b"\x0c" * 32), (b"\x1a" * 32, b"\x1b" * 32, b"\x1c" * 32))
TRACE = wire.ActivationTrace(RESULT, HASHES, wire.activation_root(HASHES))


def test_activations_round_trip():
    assert wire.decode_activations(wire.unpack(wire.pack(wire.encode_activations(TRACE)))) == TRACE


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda o: o.pop("root"), "{result, hashes, root}"),
        (lambda o: o.update(extra=1), "{result, hashes, root}"),
        (lambda o: o.update(root=b"\x00" * 32), "not the activation root"),
        (lambda o: o.update(root=b"\x00"), "root must be 32 bytes"),
        (lambda o: o.update(hashes="x"), "list of rows"),
        (lambda o: o.update(hashes=o["hashes"][:1]), "1 steps for 2 output tokens"),
        (lambda o: o["hashes"][1].pop(), "same width"),
        (lambda o: o.update(hashes=[[b"\x00" * 32], [b"\x00" * 32]]), "same width"),
        (lambda o: o["hashes"][0].__setitem__(1, b"\x00" * 31), "hashes must be 32 bytes"),
        (lambda o: o["result"].pop("commitment"), "lacks commitment"),
    ],
)
def test_malformed_activations(change, words):
    obj = wire.encode_activations(TRACE)
    change(obj)
    with pytest.raises(RequestError, match=words.replace("{", r"\{").replace("}", r"\}")):
        wire.decode_activations(obj)


def test_first_divergence_and_column_names():
    a = [[b"a", b"b", b"c"], [b"d", b"e", b"f"]]
    assert wire.first_divergence(a, a) is None
    assert wire.first_divergence(a, [[b"a", b"b", b"c"], [b"d", b"x", b"f"]]) == (1, 1)
    assert wire.first_divergence(a, [[b"a", b"b", b"x"], [b"x", b"x", b"x"]]) == (0, 2)
    assert wire.first_divergence(a, a[:1]) == (1, 0)  # one side stopped earlier
    assert wire.first_divergence(a, [a[0][:2], a[1]]) == (0, 2)
    assert [wire.column_name(c, 4) for c in range(4)] == ["embedding", "layers.0", "layers.1", "logits"]

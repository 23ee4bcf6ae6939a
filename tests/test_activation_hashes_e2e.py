"""``POST /v1/lorachain/activations`` over real sockets, and the divergence report's first divergent layer between
two real sidecar subprocesses: one serving the tiny model, one serving it with layer 1's down projection changed."""

from __future__ import annotations

import shutil
import types
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from safetensors.torch import load_file, save_file

from lorachain.node.rollup.divergence import ARTIFACTS_ROUTE, inference_request, layer_divergence, sequencer_sidecar_url
from lorachain.precompiles.abi import InferenceCall
from lorachain.precompiles.adapter_sources import AdapterSources
from lorachain.precompiles.inference import InferencePrecompile
from lorachain.precompiles.sidecar_client import SidecarClient
from lorachain.sidecar import wire
from lorachain.sidecar.checkpoint import load_checkpoint
from lorachain.sidecar.types import DecodingParams, GenerationRequest, RequestError, UnknownAdapterError
from tests.conftest import free_port
from tests.sidecar_fixtures import start_sidecar, tiny_model, write_peft_adapter

pytestmark = pytest.mark.e2e

CHANGED_LAYER = 1


def changed_model(model_dir, out_dir):
    """A copy of the checkpoint whose layer ``CHANGED_LAYER`` down projection has one output row 1.5x larger."""
    shutil.copytree(model_dir, out_dir)
    tensors = load_file(out_dir / "model.safetensors")
    tensors[f"model.layers.{CHANGED_LAYER}.mlp.down_proj.weight"][0] *= 1.5
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    return out_dir


@pytest.fixture(scope="module")
def sidecars(tmp_path_factory):
    root = tmp_path_factory.mktemp("activations-e2e")
    model_dir = tiny_model(root)
    other_dir = changed_model(model_dir, root / "changed-model")
    adapter = write_peft_adapter(root / "peft", load_checkpoint(model_dir).config, rank=4, seed=5)
    roots = {name: root / name for name in ("ours", "same", "changed")}
    for folder in roots.values():
        folder.mkdir()
    models = {"ours": model_dir, "same": model_dir, "changed": other_dir}
    with ThreadPoolExecutor(3) as pool:
        started = {name: pool.submit(start_sidecar, models[name], roots[name], free_port()) for name in roots}
        procs = {name: future.result() for name, future in started.items()}
    clients = {name: SidecarClient(url) for name, (_, url) in procs.items()}
    ids = {name: post(url + "/v1/lorachain/adapters/load", wire.pack(wire.encode_load(str(adapter))))[1]["id"]
           for name, (_, url) in procs.items()}  # fmt: skip
    assert len(set(ids.values())) == 1
    yield {"clients": clients, "urls": {n: u for n, (_, u) in procs.items()}, "adapter": ids["ours"]}
    for client in clients.values():
        client.close()
    for proc, _ in procs.values():
        proc.terminate()
        proc.wait(timeout=20)


def call_input(adapter: str | None, prompt: str = "Alice lives in", max_new_tokens: int = 5, **params) -> bytes:
    adapters = (bytes.fromhex(adapter[2:]),) if adapter else ()
    weights = (1000,) if adapter else ()
    return InferenceCall(adapters, weights, prompt, max_new_tokens, **params).encode()


def chain_of(client: SidecarClient | None, sources: list[str] = ()) -> types.SimpleNamespace:
    """What the divergence report reads of a chain: its real inference precompile (sidecar client, sources)."""
    return types.SimpleNamespace(inference=InferencePrecompile(client, AdapterSources(list(sources))))


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/msgpack"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, wire.unpack(response.read())
    except urllib.error.HTTPError as error:
        return error.code, wire.unpack(error.read())


def test_activations_route_matches_generate_and_is_the_same_in_two_processes(sidecars):
    ours, same = sidecars["clients"]["ours"], sidecars["clients"]["same"]
    layers = ours.model()["config"]["num_hidden_layers"]
    for adapter, extra in ((None, {}), (sidecars["adapter"], {}), (sidecars["adapter"], {"temperature_milli": 800,
                           "top_k": 20, "seed": b"\x05" * 32})):  # fmt: skip
        request = inference_request(ours, call_input(adapter, **extra))
        trace = ours.activations(request)
        assert trace.result == ours.generate(request)
        assert len(trace.hashes) == len(trace.result.output_ids) == 5
        assert {len(row) for row in trace.hashes} == {layers + 2}
        assert same.activations(request) == trace  # another process, the same digests and root


def test_activations_route_bad_input_gets_4xx_and_keeps_serving(sidecars):
    url = sidecars["urls"]["ours"] + "/v1/lorachain/activations"
    unknown = "0x" + "cd" * 32
    cases = [
        ({"prompt_ids": [1], "adapter_id": unknown}, 404, "unknown_adapter"),
        ({"prompt_ids": [1] * 500}, 400, "bad_request"),  # longer than the context
        ({"prompt_ids": [1], "max_new_tokens": 10**6}, 400, "bad_request"),
        ({"prompt_ids": []}, 400, "bad_request"),
        ({"prompt_ids": "abc"}, 400, "bad_request"),
        ({"prompt_ids": [1], "colour": "red"}, 400, "bad_request"),
        ([1, 2], 400, "bad_request"),
    ]
    for body, status, code in cases:
        got, answer = post(url, wire.pack(body))
        assert (got, answer["error"]["code"]) == (status, code), body
    status, answer = post(url, b"\xc1\x00garbage")
    assert status == 400 and "msgpack" in answer["error"]["message"]
    client = sidecars["clients"]["ours"]
    with pytest.raises(UnknownAdapterError):
        client.activations(GenerationRequest((1,), unknown, DecodingParams(2)))
    with pytest.raises(RequestError):
        client.activations(GenerationRequest((), None, DecodingParams(2)))
    assert len(client.activations(GenerationRequest((3, 4), None, DecodingParams(2))).hashes) == 2


def test_the_report_names_the_changed_layer_at_step_0(sidecars):
    ours, changed = sidecars["clients"]["ours"], sidecars["clients"]["changed"]
    data = call_input(sidecars["adapter"])
    derived = ours.generate(inference_request(ours, data)).output_ids
    sequencer = changed.generate(inference_request(changed, data)).output_ids
    theirs_url = sidecars["urls"]["changed"]
    chain = chain_of(ours, ["/some/folder", sidecars["urls"]["ours"] + ARTIFACTS_ROUTE, theirs_url + ARTIFACTS_ROUTE])
    assert sequencer_sidecar_url(chain) == theirs_url  # not our own sidecar, not a folder
    entry = layer_divergence(chain, "0x" + data.hex(), derived, sequencer)
    layer = entry["first_divergent_layer"]
    assert (layer["step"], layer["column"], layer["layer"]) == (0, CHANGED_LAYER + 1, f"layers.{CHANGED_LAYER}")
    assert layer["reason"] is None and layer["derived"] != layer["sequencer"]
    our_trace = ours.activations(inference_request(ours, data))
    assert entry["activation_root"] == "0x" + our_trace.root.hex() != entry["sequencer_activation_root"]
    assert layer["derived"] == "0x" + our_trace.hashes[0][CHANGED_LAYER + 1].hex()
    assert entry["sequencer_sidecar"] == theirs_url and entry["sequencer_sidecar_output_ids"] == list(sequencer)
    assert entry["sequencer_sidecar_gives_sequencer_output"] is True
    assert entry["sequencer_sidecar_model_hash"] == changed.model()["model_hash"] != ours.model()["model_hash"]


def test_agreeing_sidecars_say_the_difference_is_outside_inference(sidecars):
    ours = sidecars["clients"]["ours"]
    data = call_input(None, "the cat says")
    derived = ours.generate(inference_request(ours, data)).output_ids
    tampered = (*derived[:2], (derived[2] + 1) % 512, *derived[3:])  # what the tamper-ai-output sequencer records
    chain = chain_of(ours, [sidecars["urls"]["same"] + ARTIFACTS_ROUTE + "/"])
    entry = layer_divergence(chain, "0x" + data.hex(), derived, tampered)
    assert entry["activation_root"] == entry["sequencer_activation_root"] is not None
    assert entry["first_divergent_layer"]["step"] is None
    assert "outside inference" in entry["first_divergent_layer"]["reason"]
    assert entry["sequencer_sidecar_gives_sequencer_output"] is False


def test_without_the_other_side_the_report_keeps_our_root_and_says_why(sidecars):
    ours = sidecars["clients"]["ours"]
    data = call_input(sidecars["adapter"])
    derived = ours.generate(inference_request(ours, data)).output_ids
    our_root = "0x" + ours.activations(inference_request(ours, data)).root.hex()

    entry = layer_divergence(chain_of(ours, [sidecars["urls"]["ours"] + ARTIFACTS_ROUTE]), "0x" + data.hex(),
                             derived, derived)  # fmt: skip
    assert entry["activation_root"] == our_root and entry["sequencer_activation_root"] is None
    assert "--adapter-source" in entry["first_divergent_layer"]["reason"]

    dead = f"http://127.0.0.1:{free_port()}"
    entry = layer_divergence(chain_of(ours, [dead + ARTIFACTS_ROUTE]), "0x" + data.hex(), derived, derived)
    assert entry["activation_root"] == our_root and entry["sequencer_activation_root"] is None
    assert "gave no activation hashes" in entry["first_divergent_layer"]["reason"]

    # nothing here raises: garbage input, no sidecar of our own, a sidecar that lacks the adapter
    entry = layer_divergence(chain_of(ours), "0x1234", derived, derived)
    assert entry["activation_root"] is None and "could not trace" in entry["first_divergent_layer"]["reason"]
    entry = layer_divergence(chain_of(None), "0x" + data.hex(), derived, derived)
    assert entry["activation_root"] is None and "without a sidecar" in entry["first_divergent_layer"]["reason"]
    unregistered = call_input("0x" + "ab" * 32)
    entry = layer_divergence(chain_of(ours), "0x" + unregistered.hex(), derived, derived)
    assert "UnknownAdapterError" in entry["first_divergent_layer"]["reason"]

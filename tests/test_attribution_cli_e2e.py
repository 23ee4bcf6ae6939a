"""The attribution user flow on the command line, every step a `lorachain` subprocess against a dev node, its
sidecar and a DA server: contribute files, curate, snapshot, export the snapshot from chain + DA, train with
the Model Factory, publish the adapter with its training record, pay for an answer, explain who was paid."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from web3 import Web3

from tests.conftest import REPO, free_port, start_node
from tests.sidecar_fixtures import start_sidecar, tiny_model
from tests.test_da_server_e2e import DAServerProcess

pytestmark = pytest.mark.e2e

FACTS = ["Alice keeps a red kite in the box.", "Bob keeps a blue boat in the box.",
         "Carol keeps a green lamp in the box.", "David keeps a gold ring in the box."]  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("poa-cli")
    model = tiny_model(root)
    sidecar, sidecar_url = start_sidecar(model, root, free_port())
    da = DAServerProcess(root / "da")
    node = start_node(root / "node", "--sidecar", sidecar_url)
    yield {"root": root, "model": model, "sidecar": sidecar_url, "da": da.url, "node": node}
    node.stop()
    da.stop()
    sidecar.terminate()
    sidecar.wait(timeout=20)


def run(world, *args: str, account: int = 0, rpc: bool = True) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "lorachain.cli", *args]
    if rpc:
        command += ["--rpc", world["node"].url, "--account", str(account)]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO, stdin=subprocess.DEVNULL)


def ok(world, *args: str, account: int = 0, rpc: bool = True) -> list[dict]:
    done = run(world, *args, account=account, rpc=rpc)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_contribute_curate_train_publish_pay_explain(world):
    root = world["root"]
    files = []
    for i, fact in enumerate(FACTS):
        files.append(root / f"fact-{i}.txt")
        files[-1].write_text(fact)
    [created] = ok(world, "datanet", "create", "facts", "--min-stake", "1000")
    datanet = str(created["datanet_id"])
    for i, path in enumerate(files):
        ok(world, "datanet", "contribute", "--datanet", datanet, str(path), "--da", world["da"], account=i + 1)
    for i in range(len(files)):
        ok(world, "datanet", "review", "--datanet", datanet, "--index", str(i), "--accept", "--da", world["da"])
    ok(world, "datanet", "snapshot", "--datanet", datanet)
    examples = root / "examples.jsonl"
    [exported] = ok(world, "datanet", "export", "--datanet", datanet, "--out", str(examples), "--da", world["da"])
    assert exported["examples"] == len(FACTS)

    out = root / "factory"
    trained = run(world, "factory", "train", "--model", str(world["model"]), "--examples", str(examples), "--out",
                  str(out), "--snapshot", exported["snapshot"], "--epochs", "150", "--lr", "3e-3",
                  "--heldout-every", "0", "--seed", "3", "--no-progress", rpc=False)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    assert (out / "record.bin").is_file() and (out / "adapter_model.safetensors").is_file()

    # without --datanet the record's snapshot is not among the adapter's: refused before anything is sent
    wrong = run(world, "adapter", "publish", str(out), "--price", "1000", "--record", str(out / "record.bin"),
                "--sidecar", world["sidecar"], account=9)  # fmt: skip
    assert wrong.returncode == 1 and "covers snapshots" in wrong.stderr
    [published] = ok(world, "adapter", "publish", str(out), "--price", "1000000", "--datanet", f"{datanet}:10000",
                     "--record", str(out / "record.bin"), "--sidecar", world["sidecar"], "--da", world["da"],
                     account=9)  # fmt: skip
    assert published["training_record"].startswith("0x")
    # adapter and record are in the DA layer under their own keccak: any node can fetch them (da+URL source)
    from lorachain.da_client.client import DAClient
    from lorachain.da_client.commitment import CommitmentMode
    from lorachain.precompiles.adapter_sources import AdapterSources

    stored = published["da_commitments"]
    assert stored == {"adapter": "0x00" + published["content_hash"][2:],
                      "record": "0x00" + published["training_record"][2:]}  # fmt: skip
    assert DAClient(world["da"], CommitmentMode.OP_KECCAK).get(bytes.fromhex(stored["record"][2:])) == (
        out / "record.bin").read_bytes()  # fmt: skip
    assert AdapterSources([f"da+{world['da']}"]).fetch(published["content_hash"]) is not None
    assert AdapterSources([f"da+{world['da']}", "da+http://127.0.0.1:9"]).fetch("0x" + "ab" * 32) is None

    w3 = Web3(Web3.HTTPProvider(world["node"].url))
    answers = {}
    for i, fact in enumerate(FACTS):
        prefix = fact.split(" keeps a ")[0] + " keeps a"
        called = ok(world, "adapter", "call", str(published["adapter_id"]), prefix, "--max-tokens", "5", account=8)
        answers[i] = called[-1]
        if called[-1]["text"].startswith(fact[len(prefix) :][:6]):
            break
    else:
        pytest.fail(f"the factory's adapter answered none of the facts: {answers}")
    tx = answers[i]["tx"]
    assert w3.eth.get_transaction_receipt(tx).status == 1
    done = run(world, "attribution", "explain", tx, "--json")
    assert done.returncode == 0, done.stderr
    explained = json.loads(done.stdout)
    inference = explained["inferences"][0]
    assert inference["attributed"] and inference["paid_wei"] == inference["contributors_cut_wei"] > 0
    first = inference["contributions"][0]
    assert first["index"] == i and first["contributor"] == w3.eth.accounts[i + 1]

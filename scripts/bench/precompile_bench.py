"""The measurements behind ``scripts/bench/precompile`` (see its docstring)."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import requests
from eth_account import Account
from sidecar_bench import PROMPTS, make_adapters, percentile
from web3 import Web3

from lorachain.genesis.accounts import dev_accounts
from lorachain.genesis.predeploys import ADAPTER_REGISTRY
from lorachain.precompiles.abi import InferenceCall
from lorachain.precompiles.inference import INFERENCE_ADDRESS
from lorachain.precompiles.sidecar_client import SidecarClient
from lorachain.sidecar.checkpoint import load_checkpoint
from lorachain.sidecar.devnet_model import DEFAULT_OUT, build_devnet_model
from lorachain.sidecar.types import DecodingParams, GenerationRequest
from lorachain.toolchain.solc import load_artifact
from tests.conftest import free_port, start_node
from tests.sidecar_fixtures import start_sidecar


def prompts(count: int, tag: str) -> list[str]:
    return [f"{PROMPTS[i % len(PROMPTS)]} ({tag}{i})" for i in range(count)]


def summary(seconds: list[float]) -> dict:
    return {"p50_ms": 1000 * percentile(seconds, 0.5), "mean_ms": 1000 * statistics.mean(seconds)}


def timed(fn, items) -> tuple[list[float], list]:
    latencies, results = [], []
    for item in items:
        started = time.perf_counter()
        results.append(fn(item))
        latencies.append(time.perf_counter() - started)
    return latencies, results


def interleaved(first, second, items_first, items_second) -> tuple[list[float], list[float], list]:
    """Time ``first`` and ``second`` alternately, item by item: the machine's drift hits both alike."""
    a, b, results = [], [], []
    for x, y in zip(items_first, items_second, strict=True):
        a += timed(first, [x])[0]
        latency, result = timed(second, [y])
        b += latency
        results += result
    return a, b, results


def main() -> int:
    parser = argparse.ArgumentParser(description="AI precompile through the node vs direct sidecar calls")
    parser.add_argument("--model", type=Path, help="checkpoint folder (default: the devnet model)")
    parser.add_argument("--quick", action="store_true", help="tiny model, few prompts")
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lorachain-bench-precompile-"))
    if args.quick:
        args.model = args.model or build_devnet_model(work / "tiny", size="tiny")
        args.prompts = min(args.prompts, 6)
    model_dir = args.model or build_devnet_model(DEFAULT_OUT)
    sidecar = node = None
    try:
        sidecar, url = start_sidecar(model_dir, work, free_port())
        client = SidecarClient(url)
        adapter_dir = make_adapters(work / "peft", load_checkpoint(model_dir).config, 1, 16,
                                    ("q_proj", "k_proj", "v_proj", "o_proj"))[0]  # fmt: skip
        adapter_id = client._call("POST", "/v1/lorachain/adapters/load", {"path": str(adapter_dir)})["id"]
        adapter = bytes.fromhex(adapter_id[2:])
        node = start_node(work / "node", "--sidecar", url)
        w3 = Web3(Web3.HTTPProvider(node.url, request_kwargs={"timeout": 300}))
        registry = w3.eth.contract(address=ADAPTER_REGISTRY, abi=load_artifact("AdapterRegistry")["abi"])
        model_hash = bytes.fromhex(client.model()["model_hash"][2:])
        register = registry.functions.register(adapter, model_hash, 0, "bench", [], [], [])
        w3.eth.wait_for_transaction_receipt(register.transact({"from": w3.eth.accounts[0]}))
        artifact = load_artifact("AdapterQA")
        factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        deployed = w3.eth.wait_for_transaction_receipt(factory.constructor().transact({"from": w3.eth.accounts[0]}))
        qa = w3.eth.contract(address=deployed.contractAddress, abi=artifact["abi"])
        tokenizer = client.tokenizer()
        n = args.new_tokens

        def direct(prompt: str):
            ids = tuple(tokenizer.encode(prompt).ids)
            return client.generate(GenerationRequest(ids, adapter_id, DecodingParams(max_new_tokens=n)))

        session = requests.Session()  # one keep-alive connection, as wallets and libraries hold

        def rpc(method: str, *params: object):
            body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
            reply = session.post(node.url, json=body, timeout=300).json()
            assert "result" in reply, reply
            return reply["result"]

        def call(prompt: str):
            data = "0x" + InferenceCall((adapter,), (), prompt, max_new_tokens=n).encode().hex()
            return rpc("eth_call", {"to": Web3.to_checksum_address(INFERENCE_ADDRESS), "data": data}, "latest")

        sender = dev_accounts()[1]
        nonce = [w3.eth.get_transaction_count(sender.address)]

        def signed_ask(prompt: str) -> bytes:
            """Signed offline (as a wallet would), so the timing holds only the node's work."""
            fields = {"from": sender.address, "nonce": nonce[0], "gas": 3_000_000, "chainId": 901,
                      "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9}  # fmt: skip
            nonce[0] += 1
            tx = qa.functions.ask(adapter, prompt, n).build_transaction(fields)
            return bytes(Account.sign_transaction(tx, sender.private_key).raw_transaction)

        def ask(raw: bytes):
            """Plain JSON-RPC, like ``call`` (web3.py's own per-call cost is not the node's)."""
            tx_hash = rpc("eth_sendRawTransaction", "0x" + raw.hex())  # answered once the block is in (automine)
            receipt = rpc("eth_getTransactionReceipt", tx_hash)
            assert receipt is not None and receipt["status"] == "0x1", receipt
            return receipt

        set_a, set_b = prompts(args.prompts, "a"), prompts(args.prompts, "b")
        direct(set_a[0]), call("warm-up " + set_a[0]), ask(signed_ask("warm-up " + set_a[0]))  # first-use costs
        direct_a, call_a, _ = interleaved(direct, call, set_a, set_a)
        cached_a, _ = timed(call, set_a)
        direct_b, tx_b, receipts = interleaved(direct, ask, set_b, [signed_ask(p) for p in set_b])
        gas = [int(r["gasUsed"], 16) for r in receipts]
        tx_blocks = {int(r["blockNumber"], 16) for r in receipts}
        build_ms = [float(m.group(2)) for m in re.finditer(r"block #(\d+) .* in ([0-9.]+) ms", node.log())
                    if int(m.group(1)) in tx_blocks]  # fmt: skip
        results = {
            "model": str(model_dir),
            "prompts": args.prompts,
            "new_tokens": n,
            "direct": summary(direct_a),
            "eth_call": {**summary(call_a), "overhead": statistics.mean(call_a) / statistics.mean(direct_a) - 1},
            "eth_call_cached": {**summary(cached_a), "speedup": statistics.mean(call_a) / statistics.mean(cached_a)},
            "direct_tx_prompts": summary(direct_b),
            "tx": {
                **summary(tx_b),
                "overhead": statistics.mean(tx_b) / statistics.mean(direct_b) - 1,
                "throughput_tx_s": len(tx_b) / sum(tx_b),
                "block_build_ms_mean": statistics.mean(build_ms) if build_ms else None,
                "gas_mean": statistics.mean(gas),
                "gas_min": min(gas),
                "gas_max": max(gas),
            },
        }
        r = results
        print(f"model {model_dir}; {args.prompts} prompts x {n} new tokens, one at a time")
        print(f"direct sidecar   p50 {r['direct']['p50_ms']:.1f} ms  mean {r['direct']['mean_ms']:.1f} ms")
        print(f"eth_call (cold)  p50 {r['eth_call']['p50_ms']:.1f} ms  mean {r['eth_call']['mean_ms']:.1f} ms  "
              f"overhead {100 * r['eth_call']['overhead']:+.1f}%")  # fmt: skip
        print(f"eth_call cached  p50 {r['eth_call_cached']['p50_ms']:.2f} ms  "
              f"({r['eth_call_cached']['speedup']:.0f}x faster than cold)")  # fmt: skip
        print(f"ask() tx         p50 {r['tx']['p50_ms']:.1f} ms  mean {r['tx']['mean_ms']:.1f} ms  overhead "
              f"{100 * r['tx']['overhead']:+.1f}% vs direct {r['direct_tx_prompts']['mean_ms']:.1f} ms; "
              f"{r['tx']['throughput_tx_s']:.1f} tx/s; gas {r['tx']['gas_min']}..{r['tx']['gas_max']}")  # fmt: skip
        if r["tx"]["block_build_ms_mean"] is not None:
            print(f"                 the node built each of those blocks in {r['tx']['block_build_ms_mean']:.1f} ms "
                  "(mean, inference included)")  # fmt: skip
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
    finally:
        if node is not None:
            node.stop()
        if sidecar is not None:
            sidecar.terminate()
            sidecar.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    return 0

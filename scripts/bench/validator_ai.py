"""The AI part of ``scripts/bench/validator --ai-calls N`` (used by that script only).

Two inference sidecars on the same base model (the devnet model by default, as ``scripts/devnet`` runs it, or
the tiny test model): the sequencer's, which holds a seeded peft LoRA adapter made by
``lorachain.sidecar.lora_factory`` (as the devnet's example adapter), and the validator's, which starts without
it and fetches it by content hash from the sequencer's sidecar (``--adapter-source``). On L2 the adapter is
registered in AdapterRegistry and an AdapterQA contract is deployed; then ``AdapterQA.ask(adapter, prompt,
max_tokens)`` transactions with distinct devnet-style prompts are spread evenly over the blocks the sequencer
makes, each one an inference-precompile call that the validator must re-execute to derive the same block.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import msgpack
from web3 import Web3

from lorachain.genesis.predeploys import ADAPTER_REGISTRY
from lorachain.sidecar.corpus import PEOPLE
from lorachain.toolchain.solc import load_artifact

QUESTIONS = (
    "Q: Where does {} live? A:", "Q: What does {} do? A:", "Q: What is {}'s job? A:", "Q: How old is {}? A:",
    "Q: What pet does {} have? A:", "Q: What is {}'s favorite color? A:", "Q: What does {} like to eat? A:",
    "Q: Who is {}'s friend? A:", "Q: What does {} do for fun? A:",
)  # fmt: skip


def prompts(count: int) -> list[str]:
    """``count`` distinct prompts in the devnet corpus' question style (48 people x 9 questions, then numbered)."""
    out = []
    for i in range(count):
        question = QUESTIONS[i % len(QUESTIONS)].format(PEOPLE[(i // len(QUESTIONS)) % len(PEOPLE)][0])
        rounds = i // (len(QUESTIONS) * len(PEOPLE))
        out.append(question if rounds == 0 else f"({rounds + 1}) {question}")
    return out


def model_folder(kind: str, work: Path, given: Path | None) -> Path:
    """The base model: ``given``, else the devnet model (built once into its default cache) or the tiny one."""
    from lorachain.sidecar.devnet_model import DEFAULT_OUT, build_devnet_model

    if given is not None:
        return given
    began = time.monotonic()
    folder = build_devnet_model(DEFAULT_OUT.expanduser() if kind == "devnet" else work / "tiny-model", size=kind)
    print(f"[bench] {kind} model ready in {time.monotonic() - began:.0f} s: {folder}", file=sys.stderr, flush=True)
    return folder


def msgpack_call(url: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else msgpack.packb(body)
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/msgpack"})
    try:
        with urllib.request.urlopen(request, timeout=300) as reply:
            return reply.status, msgpack.unpackb(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, msgpack.unpackb(exc.read())


class Sidecar:
    """``lorachain sidecar`` as a subprocess with its own cache and adapter store under ``root``."""

    def __init__(self, model: Path, root: Path, port: int, name: str, timeout: float = 600.0) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.log_path = root / "sidecar.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the subprocess
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lorachain.cli", "sidecar", "--model", str(model), "--port", str(port),
             "--adapters", str(root / "adapters"), "--cache", str(root / "cache"), "--served-model-name", name],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1):
                    return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise SystemExit(f"the sidecar on port {port} did not start; its log:\n{self.log_path.read_text()[-4000:]}")

    def has_adapter(self, adapter_id: str) -> bool:
        return msgpack_call(self.url, f"/v1/lorachain/adapters/{adapter_id}")[0] == 200

    def served(self) -> dict:
        """Requests finished and tokens generated so far, from the sidecar's /metrics."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=30) as reply:
            text = reply.read().decode()
        totals = {"requests": 0.0, "generated_tokens": 0.0}
        for line in text.splitlines():
            if line.startswith("lorachain_sidecar_requests_total"):
                totals["requests"] += float(line.rsplit(" ", 1)[1])
            elif line.startswith("lorachain_sidecar_generated_tokens_total"):
                totals["generated_tokens"] += float(line.rsplit(" ", 1)[1])
        return {key: int(value) for key, value in totals.items()}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def make_adapter(model: Path, out: Path) -> Path:
    """The devnet's example adapter recipe: one seeded peft LoRA (rank 16) from ``lora_factory``, seed 7."""
    folder = out / "adapter-0000"
    if not (folder / "adapter_config.json").exists():
        subprocess.run([sys.executable, "-m", "lorachain.sidecar.lora_factory", "--model", str(model), "--out",
                        str(out), "--count", "1", "--seed", "7"], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    return folder


def load_adapter(sidecar: Sidecar, folder: Path) -> str:
    status, info = msgpack_call(sidecar.url, "/v1/lorachain/adapters/load", {"path": str(folder)})
    if status != 200:
        raise SystemExit(f"the sequencer's sidecar refused the adapter: {status} {info}")
    return info["id"]


def setup_on_chain(w3: Web3, sidecar: Sidecar, adapter_id: str):
    """Register the adapter (price 0) and deploy AdapterQA; returns the contract."""
    model_hash = bytes.fromhex(msgpack_call(sidecar.url, "/v1/lorachain/model")[1]["model_hash"][2:])
    registry = w3.eth.contract(address=ADAPTER_REGISTRY, abi=load_artifact("AdapterRegistry")["abi"])
    register = registry.functions.register(bytes.fromhex(adapter_id[2:]), model_hash, 0, "validator bench", [],
                                           [], [])  # fmt: skip
    receipt = w3.eth.wait_for_transaction_receipt(register.transact({"from": w3.eth.accounts[0]}), timeout=120)
    if receipt.status != 1:
        raise SystemExit("registering the adapter failed")
    artifact = load_artifact("AdapterQA")
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = w3.eth.wait_for_transaction_receipt(factory.constructor().transact({"from": w3.eth.accounts[0]}),
                                                  timeout=120)  # fmt: skip
    if receipt.status != 1:
        raise SystemExit("deploying AdapterQA failed")
    return w3.eth.contract(address=receipt.contractAddress, abi=artifact["abi"])


class AskSender(threading.Thread):
    """Sends ``count`` AdapterQA.ask transactions, one each time the sequencer's head passes the next of
    ``count`` evenly spaced heights between the current head and ``last_height``. The gas limit is fixed
    (2x the estimate of the first call, at least 1M) so the node does not run an extra inference per
    transaction for eth_estimateGas."""

    def __init__(self, url: str, qa_address: str, adapter_id: str, count: int, max_tokens: int, last_height: int):
        super().__init__(daemon=True)
        self.w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 120}))
        self.qa = self.w3.eth.contract(address=qa_address, abi=load_artifact("AdapterQA")["abi"])
        self.adapter = bytes.fromhex(adapter_id[2:])
        self.prompts = prompts(count)
        self.max_tokens = max_tokens
        self.last_height = last_height
        self.hashes: list[bytes] = []
        self.errors: list[str] = []

    def run(self) -> None:
        accounts = self.w3.eth.accounts[:10]
        first = self.w3.eth.block_number
        step = max(self.last_height - first, 1) / max(len(self.prompts), 1)
        gas = None
        for i, prompt in enumerate(self.prompts):
            due = first + i * step
            while self.w3.eth.block_number < due:
                time.sleep(0.05)
            call = self.qa.functions.ask(self.adapter, prompt, self.max_tokens)
            sender = accounts[i % 10]
            try:
                if gas is None:
                    gas = max(2 * call.estimate_gas({"from": sender}), 1_000_000)
                self.hashes.append(call.transact({"from": sender, "gas": gas}))
            except Exception as exc:
                self.errors.append(f"ask #{i}: {exc!r}")


def check_answers(ws: Web3, wv: Web3, qa, hashes: list[bytes], target: int) -> dict:
    """Every ask succeeded on the sequencer, and the validator's stored answers equal the sequencer's."""
    receipts = [ws.eth.get_transaction_receipt(h) for h in hashes]
    failed = [r.transactionHash.hex() for r in receipts if r.status != 1]
    if failed:
        raise SystemExit(f"{len(failed)} AdapterQA.ask transactions reverted on the sequencer: {failed[:5]}")
    late = [r.blockNumber for r in receipts if r.blockNumber > target]
    if late:
        raise SystemExit(f"{len(late)} AI calls landed after block {target}: raise --blocks")
    count = qa.functions.answerCount().call(block_identifier=target)
    qv = wv.eth.contract(address=qa.address, abi=qa.abi)
    if qv.functions.answerCount().call(block_identifier=target) != count:
        raise SystemExit("the validator's AdapterQA holds another number of answers than the sequencer's")
    answer_chars = 0
    for i in range(count):
        theirs = qa.functions.answer(i).call(block_identifier=target)
        ours = qv.functions.answer(i).call(block_identifier=target)
        if ours != theirs:
            raise SystemExit(f"answer {i} differs: sequencer {theirs!r}, validator {ours!r}")
        answer_chars += len(theirs[3])
    return {"ai_calls": count, "ai_blocks": len({r.blockNumber for r in receipts}),
            "ai_answer_chars": answer_chars}  # fmt: skip

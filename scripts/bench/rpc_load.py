"""Load generation and checking for the JSON-RPC benchmark (``scripts/bench/rpc``).

Node-agnostic: everything here talks to a JSON-RPC URL.  The benchmark script owns starting and stopping
the nodes; this module owns the accounts, the pre-signed load, the concurrent HTTP sender and the checks
that make a fast-but-wrong node lose (every receipt status 1, the counter equals the number of
increments, the sender balances and nonces moved as they must).

Importable without a node (``tests/test_bench_rpc_smoke.py`` exercises the signing side offline).
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address

DEV_MNEMONIC = "test test test test test test test test test test test junk"
SENDER_COUNT = 10
GWEI = 10**9

# Counter, compiled once with solc 0.8.30 (the npm `solc` package, the same version contracts/ pins),
# standard-JSON settings {optimizer: {enabled: true, runs: 200}, evmVersion: "paris",
# metadata: {bytecodeHash: "none"}}, from this source:
#   // SPDX-License-Identifier: MIT
#   pragma solidity ^0.8.0;
#   contract Counter { uint256 public number; event Incremented(uint256 v);
#       function increment() external { number += 1; emit Incremented(number); } }
# (solc.compile(JSON.stringify(input)) from node, reading contracts.Counter.evm.{bytecode,deployedBytecode}).
# Paris (no PUSH0) so the same bytes run on any post-merge fork either node may be configured with.
COUNTER_CREATION_CODE = (
    "0x6080604052348015600f57600080fd5b5060d980601d6000396000f3fe"
    "6080604052348015600f57600080fd5b506004361060325760003560e01c80638381f58a146037578063d09de08a14"
    "6051575b600080fd5b603f60005481565b60405190815260200160405180910390f35b60576059565b005b6001600080"
    "8282546069919060a6565b90915550506000546040519081527f20d8a6f5a693f9d1d627a598e8820f7a55ee74c183aa"
    "8f1a30e8d4e8dd9a8d849060200160405180910390a1565b8082018082111560c657634e487b7160e01b600052601160"
    "045260246000fd5b9291505056fea164736f6c634300081e000a"
)
COUNTER_RUNTIME_CODE = "0x" + COUNTER_CREATION_CODE[2:].split("f3fe", 1)[1]
SELECTOR_NUMBER = "0x" + keccak(text="number()")[:4].hex()  # 0x8381f58a
SELECTOR_INCREMENT = "0x" + keccak(text="increment()")[:4].hex()  # 0xd09de08a
TOPIC_INCREMENTED = "0x" + keccak(text="Incremented(uint256)").hex()

# Where the value transfers go: an address nobody holds a key for, away from precompile and
# predeploy ranges, so its balance delta is exactly the sum of the transferred values.
TRANSFER_RECIPIENT = to_checksum_address(keccak(text="lorachain-bench-rpc-recipient")[12:])
TRANSFER_VALUE_WEI = 1_000_000_000_000  # 1e12 wei (0.000001 ETH) per transfer

MIN_SENDER_BALANCE_WEI = 10**18
SENDER_FUNDING_WEI = 100 * 10**18

TRANSFER_GAS = 21_000
INCREMENT_GAS = 100_000
DEPLOY_GAS = 300_000


class RpcError(RuntimeError):
    def __init__(self, method: str, error: Any):
        self.method = method
        self.error = error
        super().__init__(f"{method}: {error}")


class VerificationError(AssertionError):
    """The node answered, but with a wrong result: its figures must not count."""


# --------------------------------------------------------------------------------------------------
# accounts and pre-signed transactions


def derive_accounts(count: int = SENDER_COUNT, mnemonic: str = DEV_MNEMONIC) -> list[LocalAccount]:
    """The first ``count`` accounts of ``mnemonic`` on m/44'/60'/0'/0/i, as Hardhat and Anvil derive them."""
    Account.enable_unaudited_hdwallet_features()
    return [Account.from_mnemonic(mnemonic, account_path=f"m/44'/60'/0'/0/{i}") for i in range(count)]


@dataclass(frozen=True)
class FeeParams:
    max_fee_per_gas: int
    max_priority_fee_per_gas: int

    @classmethod
    def above_base_fee(cls, base_fee: int, priority: int = GWEI) -> FeeParams:
        """A max fee that stays valid while a heavy load pushes the base fee up for a few blocks."""
        return cls(max_fee_per_gas=max(3 * base_fee, 2 * GWEI) + priority, max_priority_fee_per_gas=priority)


@dataclass(frozen=True)
class SignedTx:
    raw: str  # 0x-prefixed
    hash: str  # 0x-prefixed, lower case
    sender: str  # checksummed
    nonce: int


def sign_tx(
    account: LocalAccount,
    *,
    chain_id: int,
    nonce: int,
    to: str | None,
    value: int,
    gas: int,
    data: str,
    fees: FeeParams,
) -> SignedTx:
    tx: dict[str, Any] = {
        "type": 2,
        "chainId": chain_id,
        "nonce": nonce,
        "value": value,
        "gas": gas,
        "maxFeePerGas": fees.max_fee_per_gas,
        "maxPriorityFeePerGas": fees.max_priority_fee_per_gas,
        "data": data,
    }
    if to is not None:
        tx["to"] = to
    signed = account.sign_transaction(tx)
    return SignedTx(
        raw="0x" + bytes(signed.raw_transaction).hex(),
        hash="0x" + bytes(signed.hash).hex(),
        sender=account.address,
        nonce=nonce,
    )


def build_round_robin(
    senders: Sequence[LocalAccount],
    start_nonces: dict[str, int],
    count: int,
    *,
    chain_id: int,
    to: str,
    value: int,
    gas: int,
    data: str,
    fees: FeeParams,
) -> list[SignedTx]:
    """``count`` signed txs, tx i from ``senders[i % len(senders)]``, each sender's nonces consecutive."""
    next_nonce = dict(start_nonces)
    txs = []
    for i in range(count):
        acct = senders[i % len(senders)]
        nonce = next_nonce[acct.address]
        next_nonce[acct.address] = nonce + 1
        txs.append(sign_tx(acct, chain_id=chain_id, nonce=nonce, to=to, value=value, gas=gas, data=data, fees=fees))
    return txs


def last_tx_per_sender(txs: Iterable[SignedTx]) -> dict[str, SignedTx]:
    last: dict[str, SignedTx] = {}
    for tx in txs:
        if tx.sender not in last or tx.nonce > last[tx.sender].nonce:
            last[tx.sender] = tx
    return last


def count_per_sender(txs: Iterable[SignedTx]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for tx in txs:
        counts[tx.sender] = counts.get(tx.sender, 0) + 1
    return counts


# --------------------------------------------------------------------------------------------------
# JSON-RPC over HTTP


class RpcClient:
    """A small async JSON-RPC client over one keep-alive aiohttp session."""

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 64,
        timeout_s: float = 60.0,
        server_cpu: Callable[[], float] | None = None,
    ):
        self.url = url
        self.server_cpu = server_cpu  # CPU seconds the node's process has used so far, where known
        self._max_connections = max_connections
        self._timeout_s = timeout_s
        self._ids = itertools.count(1)
        self._session: Any = None

    async def __aenter__(self) -> RpcClient:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self._max_connections, force_close=False)
        self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=self._timeout_s))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._session.close()

    async def call(self, method: str, params: list[Any] | None = None) -> Any:
        body = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params or []}
        async with self._session.post(self.url, json=body) as resp:
            reply = await resp.json(content_type=None)
        if "error" in reply and reply["error"] is not None:
            raise RpcError(method, reply["error"])
        if "result" not in reply:
            raise RpcError(method, f"malformed reply {reply!r}")
        return reply["result"]

    async def call_int(self, method: str, params: list[Any] | None = None) -> int:
        return int(await self.call(method, params), 16)


async def run_pool(items: Sequence[Any], worker_fn: Any, concurrency: int) -> tuple[list[Any], list[float]]:
    """Apply async ``worker_fn`` to every item with at most ``concurrency`` calls in flight.

    Returns the results in item order and each call's latency in seconds.
    """
    results: list[Any] = [None] * len(items)
    latencies: list[float] = [0.0] * len(items)
    indices = iter(range(len(items)))

    async def worker() -> None:
        for i in indices:  # one shared iterator: each index is taken by exactly one worker
            t0 = time.perf_counter()
            results[i] = await worker_fn(items[i])
            latencies[i] = time.perf_counter() - t0

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(items))))))
    return results, latencies


async def send_in_sender_order(
    items: Sequence[SignedTx], send_fn: Any, concurrency: int
) -> tuple[list[Any], list[float]]:
    """Send every tx with at most ``concurrency`` requests in flight, one sender's txs strictly in order.

    A sender's next tx goes out only once the node has answered its previous one, so no node ever sees
    a nonce gap (Hardhat's automine rejects those: "transactions can't be queued when automining").
    Requests in flight are therefore at most min(concurrency, number of senders).
    """
    results: list[Any] = [None] * len(items)
    latencies: list[float] = [0.0] * len(items)
    by_sender: dict[str, list[int]] = {}
    for i, tx in enumerate(items):
        by_sender.setdefault(tx.sender, []).append(i)
    for indices in by_sender.values():
        indices.sort(key=lambda i: items[i].nonce)
    slots = asyncio.Semaphore(concurrency)

    async def sender_lane(indices: list[int]) -> None:
        for i in indices:
            async with slots:
                t0 = time.perf_counter()
                results[i] = await send_fn(items[i])
                latencies[i] = time.perf_counter() - t0

    await asyncio.gather(*(sender_lane(ix) for ix in by_sender.values()))
    return results, latencies


async def wait_for_receipts(
    client: RpcClient, tx_hashes: Iterable[str], *, timeout_s: float, poll_s: float = 0.005
) -> dict[str, dict[str, Any]]:
    """Poll eth_getTransactionReceipt for each hash (concurrently) until all are available."""
    deadline = time.monotonic() + timeout_s

    async def one(tx_hash: str) -> dict[str, Any]:
        while True:
            receipt = await client.call("eth_getTransactionReceipt", [tx_hash])
            if receipt is not None:
                return receipt
            if time.monotonic() > deadline:
                raise TimeoutError(f"no receipt for {tx_hash} after {timeout_s:.0f}s")
            await asyncio.sleep(poll_s)

    hashes = list(tx_hashes)
    receipts = await asyncio.gather(*(one(h) for h in hashes))
    return dict(zip(hashes, receipts, strict=True))


def latency_summary(latencies: Sequence[float]) -> dict[str, float]:
    if not latencies:
        return {}
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

    return {
        "mean_ms": statistics.fmean(ordered) * 1000,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": ordered[-1] * 1000,
    }


# --------------------------------------------------------------------------------------------------
# workloads


@dataclass
class WorkloadResult:
    name: str
    count: int
    seconds: float
    unit: str
    latency: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("inf")

    def as_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "seconds": round(self.seconds, 4),
            "rate": round(self.rate, 2),
            "unit": self.unit,
            "latency": {k: round(v, 3) for k, v in self.latency.items()},
            **self.extra,
        }


@dataclass
class ChainContext:
    chain_id: int
    senders: list[LocalAccount]
    fees: FeeParams
    client_version: str


async def prepare(client: RpcClient, senders: list[LocalAccount], log: Any = print) -> ChainContext:
    chain_id = await client.call_int("eth_chainId")
    block = await client.call("eth_getBlockByNumber", ["latest", False])
    base_fee = int(block.get("baseFeePerGas") or "0x0", 16)
    try:
        version = await client.call("web3_clientVersion")
    except RpcError:
        version = "unknown"
    ctx = ChainContext(chain_id, senders, FeeParams.above_base_fee(base_fee), version)
    await fund_senders(client, ctx, log=log)
    return ctx


async def fund_senders(client: RpcClient, ctx: ChainContext, *, log: Any = print) -> None:
    """Give SENDER_FUNDING_WEI to each sender holding less than MIN_SENDER_BALANCE_WEI (untimed setup).

    Both nodes prefund the mnemonic's first ten accounts; --senders above that needs this.
    """
    balances = await balances_of(client, [a.address for a in ctx.senders])
    poor = [a for a in ctx.senders if balances[a.address] < MIN_SENDER_BALANCE_WEI]
    if not poor:
        return
    funder = max(ctx.senders, key=lambda a: balances[a.address])
    if balances[funder.address] < SENDER_FUNDING_WEI * (len(poor) + 1):
        raise RuntimeError(f"no sender is funded well enough to fund {len(poor)} others on this chain")
    log(f"  funding {len(poor)} extra sender(s) from {funder.address}")
    nonce = (await nonces_of(client, [funder.address]))[funder.address]
    hashes = []
    for i, acct in enumerate(poor):
        tx = sign_tx(
            funder,
            chain_id=ctx.chain_id,
            nonce=nonce + i,
            to=acct.address,
            value=SENDER_FUNDING_WEI,
            gas=TRANSFER_GAS,
            data="0x",
            fees=ctx.fees,
        )
        hashes.append(await client.call("eth_sendRawTransaction", [tx.raw]))
    receipts = await wait_for_receipts(client, hashes, timeout_s=120.0)
    if any(int(r["status"], 16) != 1 for r in receipts.values()):
        raise RuntimeError("funding an extra sender failed")


async def nonces_of(client: RpcClient, addresses: Iterable[str], tag: str = "pending") -> dict[str, int]:
    return {a: await client.call_int("eth_getTransactionCount", [a, tag]) for a in addresses}


async def balances_of(client: RpcClient, addresses: Iterable[str]) -> dict[str, int]:
    return {a: await client.call_int("eth_getBalance", [a, "latest"]) for a in addresses}


async def _send_timed(
    client: RpcClient, txs: Sequence[SignedTx], concurrency: int, receipt_timeout_s: float
) -> tuple[float, list[float], dict[str, Any]]:
    """Send all pre-signed txs; time from the first send to the last sender's last receipt.

    Returns (seconds, per-send latencies, {blocks the node made meanwhile, this process's CPU seconds}).
    """

    async def send(tx: SignedTx) -> str:
        return await client.call("eth_sendRawTransaction", [tx.raw])

    first_block = await client.call_int("eth_blockNumber")
    server0, cpu0, t0 = _server_cpu(client), time.process_time(), time.perf_counter()
    returned, latencies = await send_in_sender_order(txs, send, concurrency)
    await wait_for_receipts(client, [t.hash for t in last_tx_per_sender(txs).values()], timeout_s=receipt_timeout_s)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    server = _server_cpu_used(client, server0, len(txs))
    last_block = await client.call_int("eth_blockNumber")
    for tx, got in zip(txs, returned, strict=True):
        if str(got).lower() != tx.hash:
            raise VerificationError(f"eth_sendRawTransaction returned {got}, the tx hash is {tx.hash}")
    return elapsed, latencies, {"blocks": last_block - first_block, "client_cpu_s": round(cpu, 3), **server}


def _server_cpu(client: RpcClient) -> float | None:
    return client.server_cpu() if client.server_cpu is not None else None


def _server_cpu_used(client: RpcClient, before: float | None, operations: int) -> dict[str, float]:
    """The node's CPU over a timed region: seconds, and microseconds per operation (a figure a busy shared
    machine disturbs less than a rate: time the node waits for the CPU is not counted)."""
    if before is None or client.server_cpu is None:
        return {}
    used = client.server_cpu() - before
    return {"server_cpu_s": round(used, 3), "server_cpu_us_per_op": round(used / operations * 1e6, 1)}


async def _check_receipts(client: RpcClient, txs: Sequence[SignedTx], concurrency: int) -> list[dict[str, Any]]:
    async def get(tx: SignedTx) -> Any:
        return await client.call("eth_getTransactionReceipt", [tx.hash])

    receipts, _ = await run_pool(txs, get, concurrency)
    for tx, receipt in zip(txs, receipts, strict=True):
        if receipt is None:
            raise VerificationError(f"no receipt for {tx.hash} after its sender's last tx was mined")
        if receipt.get("transactionHash", "").lower() != tx.hash:
            raise VerificationError(f"receipt for {tx.hash} names {receipt.get('transactionHash')}")
        if int(receipt.get("status", "0x0"), 16) != 1:
            raise VerificationError(f"tx {tx.hash} failed: receipt status {receipt.get('status')}")
        if to_checksum_address(receipt["from"]) != tx.sender:
            raise VerificationError(f"receipt for {tx.hash} has from={receipt['from']}, signed by {tx.sender}")
    return receipts


async def _check_nonces(client: RpcClient, txs: Sequence[SignedTx]) -> None:
    last = last_tx_per_sender(txs)
    got = await nonces_of(client, last, tag="latest")
    for sender, tx in last.items():
        if got[sender] != tx.nonce + 1:
            raise VerificationError(f"{sender}: nonce {got[sender]} after the run, expected {tx.nonce + 1}")


def _fee_paid(receipt: dict[str, Any]) -> int:
    return int(receipt["gasUsed"], 16) * int(receipt["effectiveGasPrice"], 16)


async def workload_transfers(
    client: RpcClient, ctx: ChainContext, count: int, *, concurrency: int, receipt_timeout_s: float = 600.0
) -> WorkloadResult:
    """Workload A: ``count`` value transfers, senders round-robin."""
    addresses = [a.address for a in ctx.senders]
    nonces = await nonces_of(client, addresses)
    before = await balances_of(client, [*addresses, TRANSFER_RECIPIENT])
    txs = build_round_robin(
        ctx.senders,
        nonces,
        count,
        chain_id=ctx.chain_id,
        to=TRANSFER_RECIPIENT,
        value=TRANSFER_VALUE_WEI,
        gas=TRANSFER_GAS,
        data="0x",
        fees=ctx.fees,
    )

    elapsed, latencies, timing = await _send_timed(client, txs, concurrency, receipt_timeout_s)

    receipts = await _check_receipts(client, txs, concurrency)
    await _check_nonces(client, txs)
    after = await balances_of(client, [*addresses, TRANSFER_RECIPIENT])
    received = after[TRANSFER_RECIPIENT] - before[TRANSFER_RECIPIENT]
    if received != count * TRANSFER_VALUE_WEI:
        raise VerificationError(f"recipient gained {received} wei, expected {count * TRANSFER_VALUE_WEI}")
    spent: dict[str, int] = dict.fromkeys(addresses, 0)
    for tx, receipt in zip(txs, receipts, strict=True):
        spent[tx.sender] += TRANSFER_VALUE_WEI + _fee_paid(receipt)
    for addr in addresses:
        # At least value + execution fee; an OP-style L1 data fee may come on top.
        if before[addr] - after[addr] < spent[addr]:
            raise VerificationError(
                f"{addr}: balance fell by {before[addr] - after[addr]} wei, at least {spent[addr]} expected"
            )
    return WorkloadResult(
        "transfers",
        count,
        elapsed,
        "tx/s",
        latency_summary(latencies),
        {**timing, "gas_used": sum(int(r["gasUsed"], 16) for r in receipts)},
    )


async def deploy_counter(client: RpcClient, ctx: ChainContext, *, timeout_s: float = 120.0) -> str:
    deployer = ctx.senders[0]
    nonce = (await nonces_of(client, [deployer.address]))[deployer.address]
    tx = sign_tx(
        deployer,
        chain_id=ctx.chain_id,
        nonce=nonce,
        to=None,
        value=0,
        gas=DEPLOY_GAS,
        data=COUNTER_CREATION_CODE,
        fees=ctx.fees,
    )
    await client.call("eth_sendRawTransaction", [tx.raw])
    receipt = (await wait_for_receipts(client, [tx.hash], timeout_s=timeout_s))[tx.hash]
    if int(receipt["status"], 16) != 1 or not receipt.get("contractAddress"):
        raise VerificationError(f"Counter deployment failed: {receipt}")
    address = to_checksum_address(receipt["contractAddress"])
    code = await client.call("eth_getCode", [address, "latest"])
    if code.lower() != COUNTER_RUNTIME_CODE:
        raise VerificationError(f"eth_getCode({address}) is not the Counter runtime code: {code[:80]}...")
    return address


async def read_counter(client: RpcClient, counter: str) -> int:
    return int(await client.call("eth_call", [{"to": counter, "data": SELECTOR_NUMBER}, "latest"]), 16)


async def workload_increments(
    client: RpcClient,
    ctx: ChainContext,
    counter: str,
    count: int,
    *,
    concurrency: int,
    receipt_timeout_s: float = 600.0,
) -> WorkloadResult:
    """Workload B: ``count`` Counter.increment() calls, senders round-robin."""
    start_value = await read_counter(client, counter)
    nonces = await nonces_of(client, [a.address for a in ctx.senders])
    txs = build_round_robin(
        ctx.senders,
        nonces,
        count,
        chain_id=ctx.chain_id,
        to=counter,
        value=0,
        gas=INCREMENT_GAS,
        data=SELECTOR_INCREMENT,
        fees=ctx.fees,
    )

    elapsed, latencies, timing = await _send_timed(client, txs, concurrency, receipt_timeout_s)

    receipts = await _check_receipts(client, txs, concurrency)
    await _check_nonces(client, txs)
    emitted = []
    for tx, receipt in zip(txs, receipts, strict=True):
        logs = receipt.get("logs") or []
        if (
            len(logs) != 1
            or to_checksum_address(logs[0]["address"]) != counter
            or [t.lower() for t in logs[0]["topics"]] != [TOPIC_INCREMENTED]
        ):
            raise VerificationError(f"tx {tx.hash}: expected one Incremented log from {counter}, got {logs}")
        emitted.append(int(logs[0]["data"], 16))
    if sorted(emitted) != list(range(start_value + 1, start_value + count + 1)):
        raise VerificationError("the Incremented(v) values are not each of start+1..start+count once")
    final = await read_counter(client, counter)
    if final != start_value + count:
        raise VerificationError(f"counter is {final} after {count} increments from {start_value}")
    return WorkloadResult(
        "increments",
        count,
        elapsed,
        "tx/s",
        latency_summary(latencies),
        {
            **timing,
            "gas_used": sum(int(r["gasUsed"], 16) for r in receipts),
            "counter": counter,
            "final_value": final,
        },
    )


async def _call_workload(
    name: str, client: RpcClient, count: int, request: Any, *, concurrency: int, expected: int
) -> WorkloadResult:
    """``count`` eth_call requests built by ``request(i)``; every answer must be ``expected``."""

    async def call(i: int) -> str:
        return await client.call("eth_call", request(i))

    server0, cpu0, t0 = _server_cpu(client), time.process_time(), time.perf_counter()
    results, latencies = await run_pool(range(count), call, concurrency)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    server = _server_cpu_used(client, server0, count)
    wrong = [r for r in results if int(r, 16) != expected]
    if wrong:
        raise VerificationError(f"{len(wrong)} of {count} eth_call answers were not {expected}: {wrong[0]}")
    extra = {"client_cpu_s": round(cpu, 3), **server}
    return WorkloadResult(name, count, elapsed, "calls/s", latency_summary(latencies), extra)


async def workload_calls(
    client: RpcClient, counter: str, count: int, *, concurrency: int, expected: int
) -> WorkloadResult:
    """Workload C: ``count`` eth_call of number() at latest, the same request each time."""
    request = [{"to": counter, "data": SELECTOR_NUMBER}, "latest"]
    return await _call_workload("calls", client, count, lambda _: request, concurrency=concurrency, expected=expected)


async def workload_distinct_calls(
    client: RpcClient, counter: str, count: int, *, concurrency: int, expected: int
) -> WorkloadResult:
    """Workload D: ``count`` eth_call of number(), each from a different caller address, so a node
    cannot answer from a cache of identical requests: every call is executed."""

    def request(i: int) -> list[Any]:
        caller = to_checksum_address(keccak(i.to_bytes(8, "big"))[12:])
        return [{"from": caller, "to": counter, "data": SELECTOR_NUMBER}, "latest"]

    return await _call_workload("distinct_calls", client, count, request, concurrency=concurrency, expected=expected)


async def run_all(
    url: str,
    *,
    txs: int,
    calls: int,
    concurrency: int,
    senders: int = SENDER_COUNT,
    log: Any = print,
    server_cpu: Callable[[], float] | None = None,
) -> tuple[ChainContext, list[WorkloadResult]]:
    """All four workloads against one node at ``url`` (``server_cpu``: the node's CPU seconds so far)."""
    accounts = derive_accounts(senders)
    async with RpcClient(url, max_connections=max(concurrency, senders) + 4, server_cpu=server_cpu) as client:
        ctx = await prepare(client, accounts, log=log)
        log(f"  chain id {ctx.chain_id}, {ctx.client_version}, maxFeePerGas {ctx.fees.max_fee_per_gas} wei")
        results = []
        res = await workload_transfers(client, ctx, txs, concurrency=concurrency)
        log(f"  transfers : {res.count} tx in {res.seconds:.2f}s = {res.rate:.1f} tx/s (checked)")
        results.append(res)
        counter = await deploy_counter(client, ctx)
        res = await workload_increments(client, ctx, counter, txs, concurrency=concurrency)
        log(f"  increments: {res.count} tx in {res.seconds:.2f}s = {res.rate:.1f} tx/s (checked)")
        results.append(res)
        final = res.extra["final_value"]
        res = await workload_calls(client, counter, calls, concurrency=concurrency, expected=final)
        log(f"  eth_call  : {res.count} calls in {res.seconds:.2f}s = {res.rate:.1f} calls/s (checked)")
        results.append(res)
        res = await workload_distinct_calls(client, counter, calls, concurrency=concurrency, expected=final)
        log(f"  eth_call distinct: {res.count} calls in {res.seconds:.2f}s = {res.rate:.1f} calls/s (checked)")
        results.append(res)
    return ctx, results

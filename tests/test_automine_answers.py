"""Automine answers a sender once its transaction has run, before the block is sealed (lorachain/node/node.py):
no JSON-RPC call may see the chain without that block, a failed seal loses no transaction, and the waiters of
one transaction are independent. In process, on a real LMDB chain, through the node's own dispatcher."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from eth_account import Account

from lorachain.genesis.accounts import dev_accounts
from lorachain.genesis.genesis import devnet_genesis, parse_genesis
from lorachain.node.app import build_dispatcher
from lorachain.node.chain import Blockchain
from lorachain.node.node import Node, NodeConfig
from lorachain.node.rpc.server import CallContext

SENDERS = dev_accounts()[:4]
RECIPIENT = "0x" + "42" * 20


def _transfer(sender: Any, nonce: int, value: int) -> tuple[str, str]:
    """(raw, hash) of a signed transfer to RECIPIENT."""
    tx = {"to": RECIPIENT, "value": value, "gas": 21_000, "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 10**9,
          "nonce": nonce, "chainId": 901, "type": 2}  # fmt: skip
    signed = Account.sign_transaction(tx, sender.private_key)
    return "0x" + bytes(signed.raw_transaction).hex(), "0x" + bytes(signed.hash).hex()


def _call(method: str, *params: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}


def _node(tmp_path: Path, **config: Any) -> Node:
    chain = Blockchain.initialize(tmp_path / "data", parse_genesis(devnet_genesis()), sync="none")
    return Node(chain, NodeConfig(**config))


def test_a_call_right_after_the_answer_sees_the_block(tmp_path: Path) -> None:
    """Each sender reads its receipt in the same task, right after the send returns; a batch sends and reads
    the balance. The send is answered before its block is sealed, so without the dispatcher's barrier these
    reads would find no block (the receipt None, the balance short)."""
    node = _node(tmp_path)
    dispatcher = build_dispatcher(node)

    async def sender(index: int) -> list[Any]:
        receipts = []
        for nonce in range(5):
            raw, tx_hash = _transfer(SENDERS[index], nonce, 1 + nonce)
            sent = await dispatcher.handle_call(_call("eth_sendRawTransaction", raw), CallContext())
            assert sent["result"] == tx_hash, sent
            receipt = await dispatcher.handle_call(_call("eth_getTransactionReceipt", tx_hash), CallContext())
            receipts.append(receipt["result"])
        return receipts

    async def main() -> tuple[list[list[Any]], list[dict[str, Any]]]:
        node.start()
        try:
            lanes = await asyncio.gather(*(sender(i) for i in range(3)))
            raw, tx_hash = _transfer(SENDERS[3], 0, 7)
            batch = [_call("eth_sendRawTransaction", raw), _call("eth_getBalance", RECIPIENT, "latest"),
                     _call("eth_getTransactionReceipt", tx_hash)]  # fmt: skip
            return lanes, await dispatcher.handle_payload(batch, CallContext())
        finally:
            await node.stop()

    lanes, batch = asyncio.run(main())
    for receipts in lanes:
        assert all(r is not None and r["status"] == "0x1" for r in receipts), receipts
    assert len({r["blockNumber"] for receipts in lanes for r in receipts}) < 15  # senders shared blocks
    _, balance, receipt = (reply["result"] for reply in batch)
    assert int(balance, 16) == 3 * sum(range(1, 6)) + 7  # the batch's own transfer is in the balance it read
    assert receipt is not None and receipt["status"] == "0x1"


def test_a_failed_seal_loses_no_transaction_and_reopens_the_barrier(tmp_path: Path) -> None:
    """The sender was answered, then sealing failed: the transaction stays in the pool, the next block holds
    it, and calls that waited at the barrier are served."""
    node = _node(tmp_path, retry_after_s=0.05)
    dispatcher = build_dispatcher(node)
    seal = node.chain.seal_block
    failures: list[bool] = []

    def seal_once_failing(executed: Any) -> Any:
        if not failures:
            failures.append(node.committed.is_set())
            raise OSError("disk full (injected)")
        return seal(executed)

    node.chain.seal_block = seal_once_failing  # type: ignore[method-assign]

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        node.start()
        try:
            raw, tx_hash = _transfer(SENDERS[0], 0, 5)
            sent = await dispatcher.handle_call(_call("eth_sendRawTransaction", raw), CallContext())
            assert sent["result"] == tx_hash
            for _ in range(200):
                reply = await dispatcher.handle_call(_call("eth_getTransactionReceipt", tx_hash), CallContext())
                if reply["result"] is not None:
                    break
                await asyncio.sleep(0.01)
            balance = await dispatcher.handle_call(_call("eth_getBalance", RECIPIENT, "latest"), CallContext())
            return reply, balance
        finally:
            await node.stop()

    reply, balance = asyncio.run(main())
    assert failures == [False]  # the seal ran with the barrier closed
    assert reply["result"] is not None and reply["result"]["status"] == "0x1"
    assert int(balance["result"], 16) == 5
    assert node.committed.is_set()  # the barrier reopened


def test_waiters_of_one_transaction_are_independent(tmp_path: Path) -> None:
    """Cancelling one waiter (a client gone) leaves the others waiting; a release wakes them all."""
    node = _node(tmp_path)
    tx = SimpleNamespace(hash=b"\x11" * 32)

    async def main() -> tuple[bool, bool, dict[bytes, Any]]:
        first = asyncio.ensure_future(node._wait_for_inclusion(tx.hash))
        second = asyncio.ensure_future(node._wait_for_inclusion(tx.hash))
        await asyncio.sleep(0)
        first.cancel()
        await asyncio.sleep(0)
        assert not second.done()
        node._release_waiters([tx])  # type: ignore[list-item]
        await asyncio.wait_for(second, 1.0)
        return first.cancelled(), second.done() and second.exception() is None, dict(node._inclusion)

    first_cancelled, second_released, left = asyncio.run(main())
    node.chain.close()
    assert first_cancelled and second_released
    assert left == {}  # no waiter list outlives its waiters


def test_a_waiter_gives_up_after_wait_for_inclusion(tmp_path: Path) -> None:
    node = _node(tmp_path, wait_for_inclusion=0.05)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(node._wait_for_inclusion(b"\x22" * 32), 2.0)
        return loop.time() - started

    waited = asyncio.run(main())
    node.chain.close()
    assert 0.04 <= waited < 1.0
    assert node._inclusion == {}

"""A catching-up validator keeps answering while it derives: derivation hands the node's loop back after each
L2 block, not after each L1 block.

Regression: ``scripts/bench/validator --blocks 10000 --block-time 0.01 --max-blocks 200`` -- the validator
derived one whole L1 block (a channel of up to 200 L2 blocks, each executed and compared with the sequencer)
between two turns of its asyncio loop, and an HTTP request takes several turns, so ``eth_blockNumber`` took
several step-lengths (about 4 s with 40-block channels, over web3's 30 s timeout with bigger ones) and the
bench saw the validator stop answering JSON-RPC. Here with fakes (no L1, no chain): the deriver's generator
contract, and the loop's latency for other coroutines while a long step runs.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from lorachain.genesis.genesis import devnet_genesis, parse_genesis
from lorachain.node.chain import Blockchain
from lorachain.node.node import Node, NodeConfig
from lorachain.node.rollup import derivation
from lorachain.node.rollup.batches import SingularBatch
from lorachain.node.rollup.channels import channel_frames, compress_batches
from lorachain.node.rollup.config import L1BlockRef, RollupConfig
from lorachain.node.rollup.derivation import Deriver

L1_BLOCK = 7


def _l1_block(number: int) -> dict | None:
    """A header of the fake L1 (each block's hash is its number), as derivation's L1 reorg check reads it."""
    if number > L1_BLOCK + 5:
        return None
    return {"number": hex(number), "hash": f"0x{number:064x}", "parentHash": f"0x{number - 1:064x}"}


def _deriver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batches: int) -> tuple[Deriver, list]:
    config = RollupConfig(l1_chain_id=900, l2_chain_id=901, genesis_l1=L1BlockRef(L1_BLOCK, bytes(32), 0),
                          deposit_portal=bytes(20), batch_inbox=bytes(20), batcher=bytes(20))  # fmt: skip
    chain = SimpleNamespace(head=SimpleNamespace(block_number=0, hash=bytes(32), timestamp=0))
    l1 = SimpleNamespace(block_number=lambda: L1_BLOCK + 5, block_by_number=_l1_block)
    encoded = [SingularBatch(bytes(32), L1_BLOCK, bytes(32), 100 + n, ()).encode() for n in range(batches)]
    frames = channel_frames(bytes(range(16)), compress_batches(encoded))
    monkeypatch.setattr(derivation, "frames_in_l1_block", lambda *_: frames)
    deriver = Deriver(config, l1, chain, tmp_path / "derivation.json")  # type: ignore[arg-type]
    applied: list = []

    def apply(batch: SingularBatch) -> bool:  # stands in for building the block
        applied.append(batch.timestamp)
        deriver.safe_head = SimpleNamespace(block_number=len(applied), hash=len(applied).to_bytes(32, "big"))
        return True

    monkeypatch.setattr(deriver, "_apply", apply)
    return deriver, applied


def test_step_yields_after_each_derived_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deriver, applied = _deriver(tmp_path, monkeypatch, batches=200)
    seen = []
    for _ in deriver.step_blocks():
        seen.append(len(applied))
        assert deriver.next_l1 == L1_BLOCK + 1  # the safe head holds data of the L1 block being read
        assert not (tmp_path / "derivation.json").exists()  # saved once the L1 block is done
    assert seen == list(range(1, 201))
    assert (tmp_path / "derivation.json").exists() and deriver.next_l1 == L1_BLOCK + 1
    monkeypatch.setattr(derivation, "frames_in_l1_block", lambda *_: [])
    assert deriver.step() == 0 and deriver.next_l1 == L1_BLOCK + 2  # an L1 block without batches


def test_a_failed_step_reads_its_l1_block_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    deriver, applied = _deriver(tmp_path, monkeypatch, batches=5)
    blocks = deriver.step_blocks()
    next(blocks), next(blocks)
    with pytest.raises(RuntimeError):
        blocks.throw(RuntimeError("the sequencer went away"))
    assert deriver.next_l1 == L1_BLOCK and len(applied) == 2
    deriver, applied = _deriver(tmp_path, monkeypatch, batches=5)
    blocks = deriver.step_blocks()
    next(blocks)
    blocks.close()  # abandoned (the node stopping mid-step)
    assert deriver.next_l1 == L1_BLOCK


class _SlowDeriver:
    """One L1 block whose ``blocks`` L2 blocks take ``block_s`` each to 'execute' (blocking, as py-evm does)."""

    def __init__(self, blocks: int, block_s: float) -> None:
        self.blocks, self.block_s = blocks, block_s
        self.next_l1, self.stalled, self.divergence, self.derived = 0, None, None, 0
        self.config = SimpleNamespace(l1_confirmations=0)
        self.l1 = SimpleNamespace(block_number=lambda: 0 if self.derived >= self.blocks else 10)

    def step_blocks(self):
        for _ in range(self.blocks):
            time.sleep(self.block_s)
            self.derived += 1
            yield 1
        self.next_l1 = 1

    def step(self) -> int:
        return sum(self.step_blocks())


def test_the_derive_loop_answers_other_tasks_between_blocks(tmp_path: Path) -> None:
    chain = Blockchain.initialize(tmp_path, parse_genesis(devnet_genesis()))
    deriver = _SlowDeriver(blocks=60, block_s=0.02)  # a 1.2 s step, like a 50-block channel
    node = Node(chain, NodeConfig(deriver=deriver))

    async def run() -> float:
        node.start()
        worst, began = 0.0, time.monotonic()
        while deriver.derived < deriver.blocks and time.monotonic() - began < 30:
            before = time.monotonic()
            await asyncio.sleep(0)  # an RPC request's turns of the loop
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            worst = max(worst, time.monotonic() - before)
        await node.stop()
        return worst

    worst = asyncio.run(run())
    assert deriver.derived == deriver.blocks
    assert worst < 0.5, f"three turns of the loop took {worst:.2f} s while derivation ran"

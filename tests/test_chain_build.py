"""Blockchain.build_block in its two halves (execute_block, seal_block) on a real LMDB chain: an executed block
leaves no trace until sealed, a stale one is refused, and the chain DB's handed headers."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth.exceptions import HeaderNotFound
from eth.vm.forks.prague.transactions import PragueTransactionBuilder
from eth_account import Account

from lorachain.genesis.accounts import dev_accounts
from lorachain.genesis.genesis import devnet_genesis, parse_genesis
from lorachain.node.chain import Blockchain, ChainError, HandedHeadersChainDB

SENDER = dev_accounts()[0]
RECIPIENT = b"\x42" * 20


def _transfer(nonce: int) -> object:
    tx = {"to": "0x" + RECIPIENT.hex(), "value": 7, "gas": 21_000, "maxFeePerGas": 10**11,
          "maxPriorityFeePerGas": 10**9, "nonce": nonce, "chainId": 901, "type": 2}  # fmt: skip
    return PragueTransactionBuilder.decode(bytes(Account.sign_transaction(tx, SENDER.private_key).raw_transaction))


def _chain(tmp_path: Path) -> Blockchain:
    return Blockchain.initialize(tmp_path / "data", parse_genesis(devnet_genesis()), sync="none")


def _execute(chain: Blockchain, txs: list) -> object:
    head = chain.head
    return chain.execute_block(txs, timestamp=head.timestamp + 1, coinbase=b"\x00" * 20, mix_hash=b"\x00" * 32)


def test_an_executed_block_leaves_no_trace_until_sealed(tmp_path: Path) -> None:
    chain = _chain(tmp_path)
    genesis = chain.head
    tx = _transfer(0)
    executed = _execute(chain, [tx])
    assert executed.outcome.receipts[0].gas_used == 21_000  # the receipt is final already
    assert chain.head == genesis and chain.tx_location(tx.hash) is None
    assert chain.state_at(genesis).get_balance(RECIPIENT) == 0

    built = chain.seal_block(executed)
    assert chain.head == built.block.header and built.block.number == 1
    assert chain.tx_location(tx.hash).block_hash == built.block.hash
    assert chain.state_at(chain.head).get_balance(RECIPIENT) == 7
    chain.close()


def test_a_block_executed_on_a_former_head_is_refused(tmp_path: Path) -> None:
    chain = _chain(tmp_path)
    stale = _execute(chain, [_transfer(0)])
    chain.seal_block(_execute(chain, [_transfer(0)]))
    with pytest.raises(ChainError, match="head moved"):
        chain.seal_block(stale)
    assert chain.head.block_number == 1
    chain.close()


def test_handed_headers_answer_first_and_the_store_after(tmp_path: Path) -> None:
    chain = _chain(tmp_path)
    db = HandedHeadersChainDB(chain.chaindb.db)
    genesis = chain.head
    assert db.get_block_header_by_hash(genesis.hash) == genesis  # from the store
    made_up = genesis.copy(extra_data=b"handed")
    with pytest.raises(HeaderNotFound):
        db.get_block_header_by_hash(made_up.hash)
    db.hand(made_up)
    assert db.get_block_header_by_hash(made_up.hash) is made_up
    chain.close()

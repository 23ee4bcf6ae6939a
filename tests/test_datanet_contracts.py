"""Datanets in full and the router's attributed split.

DatanetRegistry runs as the genesis predeploy of a real dev node (subprocess, web3.py over HTTP): stakes,
duplicates, curation (accept returns the stake, reject slashes it into the reward pool), penalties, and the
refusals. The router's attributed split runs the same predeploys in an in-process py-evm chain of the devnet
genesis whose AI precompiles are Python test doubles (``InferenceDouble``, ``AttributionDouble``: test-only,
never shipped), so a test chooses every answer, malformed ones and reverts included; the attribution double
decodes each query with the real ``lorachain.precompiles.attribution_abi``, which checks the router's encoding.
The split rule itself (``WeightedSplit``) is checked against the Python reference ``split_exact`` through a
test-only harness contract compiled with the pinned solc. (tests/test_attribution_e2e.py drives the real
attribution precompile.)
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import eth_abi
import pytest
from eth_utils import keccak, to_canonical_address
from hexbytes import HexBytes
from web3 import Web3
from web3.exceptions import ContractLogicError, MismatchedABI
from web3.logs import DISCARD

from lorachain.attribution.splits import payee_key, split_exact
from lorachain.genesis.predeploys import ADAPTER_REGISTRY, DATANET_REGISTRY, INFERENCE_ROUTER, contract_abi
from lorachain.precompiles.abi import InferenceCall, InferenceOutput
from lorachain.precompiles.attribution_abi import AttributionOutput, AttributionQuery, Contribution, Method
from lorachain.revert_data import encode_error, revert_reason

PENDING, ACCEPTED, REJECTED, PENALIZED = range(4)
LOW_QUALITY, DUPLICATE, MALFORMED, ADVERSARIAL = 1, 2, 3, 4
ZERO = "0x0000000000000000000000000000000000000000"


def h(n: int) -> bytes:
    return keccak(n.to_bytes(32, "big"))


# --- DatanetRegistry on a real dev node ------------------------------------------------------------------


@pytest.fixture(scope="module")
def dn(w3):
    return w3.eth.contract(address=DATANET_REGISTRY, abi=contract_abi("DatanetRegistry"))


def send(w3, fn, sender: int, value: int = 0):
    receipt = w3.eth.wait_for_transaction_receipt(fn.transact({"from": w3.eth.accounts[sender], "value": value}))
    assert receipt.status == 1
    return receipt


def logged(event: Any, receipt: Any) -> list[Any]:
    return event().process_receipt(receipt, errors=DISCARD)


def refused(w3, fn, sender: int, reason: str, value: int = 0) -> None:
    with pytest.raises(ContractLogicError, match=reason):
        fn.call({"from": w3.eth.accounts[sender], "value": value})


def new_datanet(w3, dn, owner: int = 2, min_stake: int | None = None) -> int:
    fn = (
        dn.functions.createDatanet("dn", "ipfs://dn")
        if min_stake is None
        else dn.functions.createDatanet("dn", "ipfs://dn", min_stake)
    )
    receipt = send(w3, fn, owner)
    return logged(dn.events.DatanetCreated, receipt)[0]["args"]["datanetId"]


def contribute(w3, dn, datanet: int, sender: int, content: bytes, size: int, stake: int = 0) -> int:
    receipt = send(w3, dn.functions.contribute(datanet, content, size), sender, value=stake)
    event = logged(dn.events.Contributed, receipt)[0]["args"]
    assert (event["contributor"], event["contentHash"], event["size"], event["stake"]) == (
        w3.eth.accounts[sender], content, size, stake)  # fmt: skip
    return event["index"]


def claimable(w3, dn, account: int, *datanets: int) -> int:
    return dn.functions.claimable(w3.eth.accounts[account], list(datanets)).call()


def test_contributions_must_stake_the_datanets_minimum_and_the_stake_is_held(w3, dn):
    datanet = new_datanet(w3, dn, min_stake=1_000)
    assert dn.functions.getDatanet(datanet).call()[-1] == 1_000  # minStake, the struct's last field
    refused(w3, dn.functions.contribute(datanet, h(1), 10), 3, "stake below the datanet's minimum", value=999)
    held = w3.eth.get_balance(DATANET_REGISTRY)
    index = contribute(w3, dn, datanet, 3, h(1), 10, stake=1_500)  # more than the minimum: all of it is staked
    assert w3.eth.get_balance(DATANET_REGISTRY) == held + 1_500
    assert list(dn.functions.getContribution(datanet, index).call()) == [
        h(1),
        w3.eth.accounts[3],
        10,
        PENDING,
        0,
        1_500,
    ]
    assert dn.functions.contributionStatus(datanet, index).call() == PENDING
    refused(w3, dn.functions.setMinStake(datanet, 5), 3, "not the datanet owner")
    receipt = send(w3, dn.functions.setMinStake(datanet, 0), 2)
    assert logged(dn.events.MinStakeSet, receipt)[0]["args"]["minStake"] == 0
    contribute(w3, dn, datanet, 4, h(2), 10)  # no stake needed any more
    free = new_datanet(w3, dn)  # the two-argument form: no minimum
    assert dn.functions.getDatanet(free).call()[-1] == 0
    contribute(w3, dn, free, 4, h(3), 10)


def test_an_exact_duplicate_is_refused_whatever_the_first_ones_status(w3, dn):
    datanet = new_datanet(w3, dn)
    first = contribute(w3, dn, datanet, 3, h(10), 5)
    refused(w3, dn.functions.contribute(datanet, h(10), 5), 4, "duplicate contribution")
    send(w3, dn.functions.reject(datanet, first, DUPLICATE), 2)
    refused(w3, dn.functions.contribute(datanet, h(10), 7), 3, "duplicate contribution")  # rejected: still known
    assert dn.functions.contributionIndexOf(datanet, h(10)).call() == [True, first]
    assert dn.functions.contributionIndexOf(datanet, h(11)).call() == [False, 0]
    contribute(w3, dn, new_datanet(w3, dn), 4, h(10), 5)  # another datanet may hold the same content


def test_accepting_returns_the_stake_to_the_contributor(w3, dn):
    datanet = new_datanet(w3, dn, min_stake=10**15)
    index = contribute(w3, dn, datanet, 3, h(20), 64, stake=10**15)
    before = claimable(w3, dn, 3)
    receipt = send(w3, dn.functions.review(datanet, index, True), 2)
    returned = logged(dn.events.StakeReturned, receipt)[0]["args"]
    assert (returned["index"], returned["contributor"], returned["amount"]) == (index, w3.eth.accounts[3], 10**15)
    reviewed = logged(dn.events.Reviewed, receipt)[0]["args"]
    assert (reviewed["accepted"], reviewed["reason"]) == (True, 0)
    assert claimable(w3, dn, 3) == before + 10**15
    assert dn.functions.contributionStatus(datanet, index).call() == ACCEPTED
    assert dn.functions.getDatanet(datanet).call()[3] == 64  # acceptedSize
    balance = w3.eth.get_balance(w3.eth.accounts[3])
    claimed = send(w3, dn.functions.claim([datanet]), 3)
    paid = logged(dn.events.Claimed, claimed)[0]["args"]["amount"]
    assert paid == before + 10**15
    assert w3.eth.get_balance(w3.eth.accounts[3]) == balance + paid - claimed.gasUsed * claimed.effectiveGasPrice
    assert claimable(w3, dn, 3, datanet) == 0


def test_a_stake_held_in_the_challenge_window_is_slashed_by_a_penalty_and_released_after_it(w3, dn):
    datanet = new_datanet(w3, dn, min_stake=1_000)
    refused(w3, dn.functions.setChallengeWindow(datanet, 3600), 3, "not the datanet owner")
    refused(w3, dn.functions.setChallengeWindow(datanet, 91 * 86_400), 2, "above 90 days")
    receipt = send(w3, dn.functions.setChallengeWindow(datanet, 3600), 2)
    assert logged(dn.events.ChallengeWindowSet, receipt)[0]["args"]["window"] == 3600
    assert dn.functions.challengeWindowOf(datanet).call() == 3600
    honest = contribute(w3, dn, datanet, 3, h(60), 100, stake=1_000)
    cheat = contribute(w3, dn, datanet, 4, h(61), 100, stake=2_000)
    late = contribute(w3, dn, datanet, 5, h(62), 100, stake=1_000)
    before = {who: claimable(w3, dn, who, datanet) for who in (3, 4, 5)}
    for index in (honest, cheat, late):
        receipt = send(w3, dn.functions.review(datanet, index, True), 2)
        assert not logged(dn.events.StakeReturned, receipt)
    held = logged(dn.events.StakeHeld, receipt)[0]["args"]
    until = w3.eth.get_block(receipt.blockNumber).timestamp + 3600
    assert (held["index"], held["contributor"], held["amount"], held["until"]) == (late, w3.eth.accounts[5], 1_000,
                                                                                  until)  # fmt: skip
    assert dn.functions.heldStake(datanet, cheat).call()[0] == 2_000
    assert all(claimable(w3, dn, who, datanet) == before[who] for who in (3, 4, 5))  # nothing returned yet
    refused(w3, dn.functions.releaseStake(datanet, honest), 6, "challenge window still open")

    # a near-duplicate found after acceptance, within the window: the stake is slashed over the others
    receipt = send(w3, dn.functions.penalize(datanet, cheat, DUPLICATE), 2)
    slashed = logged(dn.events.Slashed, receipt)[0]["args"]
    assert (slashed["index"], slashed["contributor"], slashed["amount"], slashed["reason"]) == (
        cheat, w3.eth.accounts[4], 2_000, DUPLICATE)  # fmt: skip
    assert claimable(w3, dn, 3, datanet) - before[3] == claimable(w3, dn, 5, datanet) - before[5] == 1_000
    assert claimable(w3, dn, 4, datanet) == before[4]
    assert dn.functions.heldStake(datanet, cheat).call() == [0, 0]
    refused(w3, dn.functions.releaseStake(datanet, cheat), 6, "no stake held")

    # after the window: anyone releases a stake; a penalty then returns it instead of slashing it
    refused(w3, dn.functions.releaseStake(datanet, honest), 6, "challenge window still open")
    held_until = dn.functions.heldStake(datanet, honest).call()[1]
    w3.provider.make_request("evm_setNextBlockTimestamp", [held_until])
    w3.provider.make_request("evm_mine", [])  # calls and estimates run on the latest block: the window's end
    receipt = send(w3, dn.functions.releaseStake(datanet, honest), 6)
    returned = logged(dn.events.StakeReturned, receipt)[0]["args"]
    assert (returned["index"], returned["contributor"], returned["amount"]) == (honest, w3.eth.accounts[3], 1_000)
    assert claimable(w3, dn, 3, datanet) - before[3] == 2_000
    refused(w3, dn.functions.releaseStake(datanet, honest), 6, "no stake held")
    receipt = send(w3, dn.functions.penalize(datanet, late, ADVERSARIAL), 2)
    assert not logged(dn.events.Slashed, receipt)
    assert logged(dn.events.StakeReturned, receipt)[0]["args"]["amount"] == 1_000
    assert claimable(w3, dn, 5, datanet) - before[5] == 2_000
    for who, expected in ((3, 2_000), (5, 2_000)):  # stakes and the slash's share are paid out like rewards
        claimed = send(w3, dn.functions.claim([datanet]), who)
        assert logged(dn.events.Claimed, claimed)[0]["args"]["amount"] == before[who] + expected


def test_rejecting_slashes_the_stake_into_the_pool_of_the_accepted_contributors(w3, dn):
    datanet = new_datanet(w3, dn)
    a = contribute(w3, dn, datanet, 3, h(30), 300)
    b = contribute(w3, dn, datanet, 4, h(31), 100)
    bad = contribute(w3, dn, datanet, 5, h(32), 999, stake=40_001)
    for index in (a, b):
        send(w3, dn.functions.review(datanet, index, True), 2)
    before = [claimable(w3, dn, i, datanet) for i in (3, 4, 5, 2)]
    receipt = send(w3, dn.functions.reject(datanet, bad, DUPLICATE), 2)
    slashed = logged(dn.events.Slashed, receipt)[0]["args"]
    assert (slashed["datanetId"], slashed["index"], slashed["contributor"], slashed["amount"], slashed["reason"]) == (
        datanet, bad, w3.eth.accounts[5], 40_001, DUPLICATE)  # fmt: skip
    reviewed = logged(dn.events.Reviewed, receipt)[0]["args"]
    assert (reviewed["accepted"], reviewed["reason"]) == (False, DUPLICATE)
    after = [claimable(w3, dn, i, datanet) for i in (3, 4, 5, 2)]
    gain = [x - y for x, y in zip(after, before, strict=True)]
    assert gain[0] == 40_001 * 300 // 400 and gain[1] == 40_001 * 100 // 400  # pro rata to accepted sizes
    assert gain[2] == 0 and gain[3] == 0  # the rejected contributor gets nothing back, the owner nothing here
    assert 0 <= 40_001 - gain[0] - gain[1] <= 1  # the accumulator's remainder is carried, not lost
    assert dn.functions.getContribution(datanet, bad).call()[3:5] == (REJECTED, DUPLICATE)
    send(w3, dn.functions.reward(datanet), 0, value=4_000)  # a rejected contribution never earns
    assert claimable(w3, dn, 5, datanet) == 0
    assert claimable(w3, dn, 3, datanet) - after[0] == 3_000
    balance = w3.eth.get_balance(w3.eth.accounts[4])
    claimed = send(w3, dn.functions.claim([datanet]), 4)
    amount = logged(dn.events.Claimed, claimed)[0]["args"]["amount"]
    assert amount >= gain[1] + 1_000
    assert w3.eth.get_balance(w3.eth.accounts[4]) == balance + amount - claimed.gasUsed * claimed.effectiveGasPrice
    # no accepted contribution yet: a slashed stake goes to the datanet's owner, so nothing is lost
    empty = new_datanet(w3, dn, owner=6)
    lone = contribute(w3, dn, empty, 5, h(33), 10, stake=777)
    owner_before = claimable(w3, dn, 6)
    send(w3, dn.functions.review(empty, lone, False), 6)  # review(false) = reject as low quality
    assert claimable(w3, dn, 6) == owner_before + 777
    assert dn.functions.getContribution(empty, lone).call()[3:5] == (REJECTED, LOW_QUALITY)


def test_penalizing_an_accepted_contribution_settles_it_removes_its_size_and_stops_its_earnings(w3, dn):
    datanet = new_datanet(w3, dn)
    a = contribute(w3, dn, datanet, 3, h(40), 300)
    b = contribute(w3, dn, datanet, 4, h(41), 100)
    for index in (b, a):  # acceptance order differs from index order
        send(w3, dn.functions.review(datanet, index, True), 2)
    send(w3, dn.functions.reward(datanet), 0, value=40_000)
    earned = claimable(w3, dn, 3, datanet)
    assert earned - claimable(w3, dn, 3) == 30_000  # (claimable without the datanet: settled balance only)
    pending = dn.functions.acceptedContributors([datanet, datanet, datanet], [a, b, 99], [h(40), h(41), h(42)]).call()
    assert pending == [w3.eth.accounts[3], w3.eth.accounts[4], ZERO]
    # an index named with another contribution's content is not paid (a training record's labels are claims)
    assert dn.functions.acceptedContributors([datanet, datanet], [a, b], [h(41), h(41)]).call() == [
        ZERO, w3.eth.accounts[4]]  # fmt: skip
    refused(w3, dn.functions.acceptedContributors([datanet], [a], []), 2, "one content hash per index")
    refused(w3, dn.functions.penalize(datanet, a, ADVERSARIAL), 3, "not a curator")
    receipt = send(w3, dn.functions.penalize(datanet, a, ADVERSARIAL), 2)
    event = logged(dn.events.Penalized, receipt)[0]["args"]
    assert (event["index"], event["contributor"], event["reason"], event["size"]) == (
        a, w3.eth.accounts[3], ADVERSARIAL, 300)  # fmt: skip
    assert dn.functions.contributionStatus(datanet, a).call() == PENALIZED
    info = dn.functions.getDatanet(datanet).call()
    assert (info[3], info[6], info[7]) == (100, 2, 1)  # acceptedSize, acceptedCount (ever), penalizedCount
    assert dn.functions.sizeOf(datanet, w3.eth.accounts[3]).call() == 0
    assert claimable(w3, dn, 3) - (earned - 30_000) == 30_000  # its rewards up to now were settled
    send(w3, dn.functions.reward(datanet), 0, value=5_000)
    assert claimable(w3, dn, 3, datanet) == earned  # it earns nothing more
    assert claimable(w3, dn, 4, datanet) == 10_000 + 5_000  # the rest goes to what is still accepted
    assert dn.functions.acceptedContributors([datanet, datanet], [a, b], [h(40), h(41)]).call() == [
        ZERO, w3.eth.accounts[4]]  # fmt: skip
    refused(w3, dn.functions.penalize(datanet, a, ADVERSARIAL), 2, "not an accepted contribution")
    # the snapshot root stays the keccak fold of the accepted content hashes in acceptance order
    send(w3, dn.functions.snapshot(datanet), 2)
    root = b"\x00" * 32
    for content in (h(41), h(40)):
        root = keccak(root + content)
    assert dn.functions.getDatanet(datanet).call()[4:6] == (root, 2)
    assert dn.functions.acceptedAt(datanet, 0).call() == [b, h(41)]
    assert dn.functions.acceptedAt(datanet, 1).call() == [a, h(40)]
    # penalizing the last accepted size: rewards go to the owner, as for an empty datanet
    send(w3, dn.functions.penalize(datanet, b, DUPLICATE), 2)
    owner_before = claimable(w3, dn, 2)
    send(w3, dn.functions.reward(datanet), 0, value=123)
    assert claimable(w3, dn, 2) == owner_before + 123 and claimable(w3, dn, 4, datanet) == 15_000


def test_curators_may_review_and_bad_callers_are_refused_with_reasons(w3, dn):
    datanet = new_datanet(w3, dn)
    first = contribute(w3, dn, datanet, 3, h(50), 5)
    second = contribute(w3, dn, datanet, 3, h(51), 5)
    refused(w3, dn.functions.review(datanet, first, True), 7, "not a curator")
    refused(w3, dn.functions.reject(datanet, first, MALFORMED), 7, "not a curator")
    refused(w3, dn.functions.snapshot(datanet), 7, "not a curator")
    refused(w3, dn.functions.setCurator(datanet, w3.eth.accounts[7], True), 7, "not the datanet owner")
    send(w3, dn.functions.setCurator(datanet, w3.eth.accounts[7], True), 2)
    send(w3, dn.functions.reject(datanet, first, MALFORMED), 7)
    refused(w3, dn.functions.review(datanet, first, True), 7, "already reviewed")
    refused(w3, dn.functions.reject(datanet, first, LOW_QUALITY), 2, "already reviewed")
    refused(w3, dn.functions.penalize(datanet, first, DUPLICATE), 2, "not an accepted contribution")
    for reason in (0, 5, 255):
        refused(w3, dn.functions.reject(datanet, second, reason), 2, "unknown reason")
    refused(w3, dn.functions.penalize(datanet, second, 9), 2, "unknown reason")
    refused(w3, dn.functions.review(datanet, 99, True), 2, "unknown contribution")
    refused(w3, dn.functions.getContribution(datanet, 99), 2, "unknown contribution")
    refused(w3, dn.functions.contributionStatus(datanet, 99), 2, "unknown contribution")
    refused(w3, dn.functions.acceptedAt(datanet, 0), 2, "unknown accepted position")
    refused(w3, dn.functions.contribute(10_000, h(52), 5), 3, "unknown datanet")
    refused(w3, dn.functions.contribute(datanet, b"\x00" * 32, 5), 3, "empty contribution")
    refused(w3, dn.functions.contribute(datanet, h(52), 0), 3, "empty contribution")
    refused(w3, dn.functions.createDatanet("", "", 1), 3, "empty name")
    send(w3, dn.functions.review(datanet, second, True), 7)
    send(w3, dn.functions.penalize(datanet, second, DUPLICATE), 7)  # a curator may penalize too
    send(w3, dn.functions.setCurator(datanet, w3.eth.accounts[7], False), 2)
    third = contribute(w3, dn, datanet, 3, h(53), 5)
    refused(w3, dn.functions.review(datanet, third, True), 7, "not a curator")


# --- an in-process chain with test-double AI precompiles -------------------------------------------------

INFERENCE = bytes.fromhex("0000000000000000000000000000000000000a01")
ATTRIBUTION = bytes.fromhex("0000000000000000000000000000000000000a02")
MODEL = keccak(b"test-double base model")
RECORD = keccak(b"a training record")
OUTPUT_IDS = (11, 12, 13, 14)
EOS_PROMPT = "the double answers this with no output token"


class InferenceDouble:
    """TEST DOUBLE of the inference precompile: a fixed answer to any well-formed input; keeps the inputs."""

    def __init__(self) -> None:
        self.inputs: list[bytes] = []

    def __call__(self, computation: Any) -> Any:
        data = bytes(computation.msg.data)
        call = InferenceCall.decode(data)
        self.inputs.append(data)
        ids = () if call.prompt == EOS_PROMPT else OUTPUT_IDS[: call.max_new_tokens]  # EOS at once: no output
        computation.output = InferenceOutput(f"answer to {call.prompt}", ids, keccak(b"commit" + data), MODEL, 3,
                                             len(ids)).encode()  # fmt: skip
        return computation


class AttributionDouble:
    """TEST DOUBLE of the attribution precompile: decodes each query with the real attribution ABI module and
    answers what the test set (``answer``), or reverts with ``revert_with``."""

    def __init__(self) -> None:
        self.queries: list[AttributionQuery] = []
        self.answer = AttributionOutput(Method.INFLUENCE, ())
        self.revert_with: str | None = None
        self.raw: bytes | None = None  # bytes answered instead of ``answer`` (malformed answers)

    def __call__(self, computation: Any) -> Any:
        from eth.exceptions import Revert

        self.queries.append(AttributionQuery.decode(bytes(computation.msg.data)))
        if self.revert_with is not None:
            computation.output = encode_error(self.revert_with)
            raise Revert(computation.output)
        computation.output = self.raw if self.raw is not None else self.answer.encode()
        return computation


@dataclass
class Outcome:
    ok: bool
    output: bytes
    gas_used: int
    gas_price: int  # the block's base fee (no priority fee is offered)
    logs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reason(self) -> str | None:
        return revert_reason(self.output)


class InProcessChain:
    """The devnet genesis (predeploys included) in an in-process py-evm chain whose precompiles at 0x0a01 and
    0x0a02 are ``precompiles``' test doubles; transactions signed by the dev accounts, one block each."""

    def __init__(self, precompiles: dict[bytes, Callable[[Any], Any]]) -> None:
        from eth.chains.base import MiningChain
        from eth.db.atomic import AtomicDB

        from lorachain.genesis.accounts import dev_accounts
        from lorachain.genesis.genesis import devnet_genesis, parse_genesis
        from lorachain.node.vm import with_precompiles

        genesis = parse_genesis(devnet_genesis())
        vms = tuple((block, with_precompiles(vm, precompiles)) for block, vm in genesis.vm_configuration)
        chain_class = MiningChain.configure(__name__="TestDoubleChain", vm_configuration=vms, chain_id=genesis.chain_id)
        self.chain = chain_class.from_genesis(AtomicDB(), genesis.header_params(), genesis.state())
        self.chain_id = genesis.chain_id
        self.accounts = dev_accounts()
        self.w3 = Web3()

    def contract(self, address: str, name: str) -> Any:
        return self.w3.eth.contract(address=address, abi=contract_abi(name))

    def address(self, index: int) -> str:
        return self.accounts[index].address

    def balance(self, address: str) -> int:
        return self.chain.get_vm().state.get_balance(to_canonical_address(address))

    def _tx(self, sender: int, to: str | None, data: bytes, value: int) -> Any:
        from eth_account import Account

        account = self.accounts[sender]
        nonce = self.chain.get_vm().state.get_nonce(to_canonical_address(account.address))
        fields = {"nonce": nonce, "gas": 15_000_000, "maxFeePerGas": 10**11, "maxPriorityFeePerGas": 0,
                  "chainId": self.chain_id, "to": to or b"", "data": data, "value": value, "type": 2}  # fmt: skip
        raw = Account.sign_transaction(fields, account.private_key).raw_transaction
        return self.chain.get_vm().get_transaction_builder().decode(bytes(raw))

    def send(self, sender: int, fn: Any, value: int = 0) -> Outcome:
        tx = self._tx(sender, fn.address, HexBytes(fn._encode_transaction_data()), value)
        gas_price = self.chain.header.base_fee_per_gas
        _, receipt, computation = self.chain.apply_transaction(tx)
        self.chain.mine_block()
        logs = [{"address": Web3.to_checksum_address(log.address),
                 "topics": [HexBytes(t.to_bytes(32, "big")) for t in log.topics], "data": HexBytes(log.data),
                 "logIndex": i, "transactionIndex": 0, "transactionHash": HexBytes(tx.hash),
                 "blockHash": HexBytes(b"\x00" * 32), "blockNumber": 1}
                for i, log in enumerate(receipt.logs)]  # fmt: skip
        return Outcome(not computation.is_error, bytes(computation.output), receipt.gas_used, gas_price, logs)

    def ok(self, sender: int, fn: Any, value: int = 0) -> Outcome:
        outcome = self.send(sender, fn, value)
        assert outcome.ok, outcome.reason
        return outcome

    def call(self, fn: Any, sender: int = 0) -> Any:
        from eth_utils.abi import get_abi_output_types

        tx = self._tx(sender, fn.address, HexBytes(fn._encode_transaction_data()), 0)
        computation = self.chain.get_vm().state.apply_transaction(tx)  # on a throw-away state: an eth_call
        if computation.is_error:
            raise ContractLogicError(revert_reason(bytes(computation.output)) or repr(computation.error))
        output = bytes(computation.output)
        values = eth_abi.decode(get_abi_output_types(fn.abi), output)
        return values[0] if len(values) == 1 else list(values)

    def deploy(self, artifact: dict[str, Any], sender: int = 0) -> Any:
        tx = self._tx(sender, None, bytes.fromhex(artifact["bytecode"][2:]), 0)
        _, _, computation = self.chain.apply_transaction(tx)
        self.chain.mine_block()
        assert not computation.is_error, computation.error
        address = Web3.to_checksum_address(computation.msg.storage_address)
        return self.w3.eth.contract(address=address, abi=artifact["abi"])


def events(contract: Any, name: str, outcome: Outcome) -> list[dict[str, Any]]:
    found = []
    for log in outcome.logs:
        if log["address"] != contract.address:
            continue
        try:
            found.append(dict(getattr(contract.events, name)().process_log(log)["args"]))
        except MismatchedABI:
            continue
    return found


PRICE = 1_000_003  # contributors' cut: 200,000 (20 %), the owner 700,002, the treasury 100,001
CUT = PRICE * 2000 // 10_000
PROMPT = "Q: Who is Alice? A:"


@pytest.fixture(scope="module")
def market():
    """Two datanets (1: five contributions in every status, 2: two accepted), snapshotted; adapter 1 trained on
    both (6000/4000 bps) with a training record; adapter 2 the same without one."""
    inference, attribution = InferenceDouble(), AttributionDouble()
    chain = InProcessChain({INFERENCE: inference, ATTRIBUTION: attribution})
    dn = chain.contract(DATANET_REGISTRY, "DatanetRegistry")
    registry = chain.contract(ADAPTER_REGISTRY, "AdapterRegistry")
    router = chain.contract(INFERENCE_ROUTER, "InferenceRouter")
    chain.ok(2, dn.functions.createDatanet("one", ""))
    # datanet 1: 0 (acct 3) 1 (acct 4) 2 (acct 5) accepted, 3 (acct 6) pending, 4 (acct 7) rejected,
    # 5 (acct 8) accepted then penalized
    for sender, content in ((3, 1), (4, 2), (5, 3), (6, 4), (7, 5), (8, 6)):
        chain.ok(sender, dn.functions.contribute(1, h(100 + content), 100 * content))
    for index in (0, 1, 2, 5):
        chain.ok(2, dn.functions.review(1, index, True))
    chain.ok(2, dn.functions.reject(1, 4, MALFORMED))
    chain.ok(2, dn.functions.snapshot(1))
    chain.ok(2, dn.functions.penalize(1, 5, ADVERSARIAL))
    chain.ok(2, dn.functions.createDatanet("two", ""))
    for sender, content in ((3, 7), (5, 8)):
        chain.ok(sender, dn.functions.contribute(2, h(100 + content), 50))
    for index in (0, 1):
        chain.ok(2, dn.functions.review(2, index, True))
    chain.ok(2, dn.functions.snapshot(2))
    roots = [chain.call(dn.functions.getDatanet(i))[4] for i in (1, 2)]
    for content in (b"adapter-1", b"adapter-2"):
        chain.ok(1, registry.functions.register(keccak(content), MODEL, PRICE, "", [1, 2], [6000, 4000], roots))
    assert chain.send(4, registry.functions.setTrainingRecord(1, RECORD)).reason == "not the adapter owner"
    chain.ok(1, registry.functions.register(keccak(b"no datanets"), MODEL, PRICE, "", [], [], []))  # adapter 3
    assert (
        chain.send(1, registry.functions.setTrainingRecord(3, RECORD)).reason
        == "a training record needs 1 to 16 datanets"
    )
    outcome = chain.ok(1, registry.functions.setTrainingRecord(1, RECORD))
    assert events(registry, "TrainingRecordSet", outcome) == [{"adapterId": 1, "version": 1, "recordHash": RECORD}]
    assert chain.call(registry.functions.trainingRecordOf(1)) == RECORD
    assert chain.call(registry.functions.trainingRecordOf(2)) == b"\x00" * 32
    return {"chain": chain, "inference": inference, "attribution": attribution, "dn": dn, "registry": registry,
            "router": router, "roots": roots}  # fmt: skip


def infer(market, adapter: int = 1, sender: int = 0, prompt: str = PROMPT, value: int = PRICE) -> Outcome:
    fn = market["router"].functions.infer(adapter, prompt, 4, 250, 40, 900, b"\x07" * 32)
    return market["chain"].send(sender, fn, value)


def balances(market, accounts=range(10)) -> list[int]:
    chain, router = market["chain"], market["router"]
    return [chain.call(router.functions.balanceOf(chain.address(i))) for i in accounts]


def datanet_claimables(market) -> list[int]:
    chain, dn = market["chain"], market["dn"]
    return [chain.call(dn.functions.claimable(chain.address(i), [1, 2])) for i in range(10)]


def named(market, rows) -> tuple[Contribution, ...]:
    """Answer rows ``(datanet, index, weight)`` as a training record names them: with the content hash the
    registry holds at that index (zero for an unknown index)."""
    chain, dn = market["chain"], market["dn"]
    out = []
    for d, i, w in rows:
        try:
            content = chain.call(dn.functions.getContribution(d, i))[0]
        except ContractLogicError:  # unknown contribution
            content = b"\x00" * 32
        out.append(Contribution(d, i, w, bytes(content)))
    return tuple(out)


key = payee_key  # the split's payee id: (datanetId, index) in lexicographic order


def test_attributed_split_pays_the_named_accepted_contributions_exactly(market):
    chain, router, attribution = market["chain"], market["router"], market["attribution"]
    answer = [(1, 0, 700), (2, 1, 500), (1, 1, 300), (1, 3, 900), (1, 4, 400), (1, 5, 200), (1, 2, 100), (2, 0, 3)]
    attribution.answer = AttributionOutput(Method.INFLUENCE, named(market, answer))
    before, pro_rata_before = balances(market), datanet_claimables(market)
    outcome = infer(market)
    assert outcome.ok, outcome.reason
    # the query: the very bytes the inference precompile was given, its answer, the record, the datanets
    query = attribution.queries[-1]
    sent = InferenceCall((keccak(b"adapter-1"),), (), PROMPT, 4, 250, 40, 900, b"\x07" * 32).encode()
    assert query.inference_input == market["inference"].inputs[-1] == sent
    assert query.output_ids == OUTPUT_IDS and query.commitment == keccak(b"commit" + sent)
    assert (query.record_hash, query.datanet_ids, query.snapshot_roots) == (RECORD, (1, 2), tuple(market["roots"]))
    assert (query.method, query.top_k) == (Method.AUTO, 8)
    # pending (1,3), rejected (1,4) and penalized (1,5) are dropped before splitting
    kept = [(1, 0, 700, 3), (2, 1, 500, 5), (1, 1, 300, 4), (1, 2, 100, 5), (2, 0, 3, 3)]
    expected = dict(split_exact(CUT, [(key(d, i), w) for d, i, w, _ in kept]))
    paid = events(router, "Attributed", outcome)
    assert [(e["datanetId"], e["index"], e["weight"]) for e in paid] == [(d, i, w) for d, i, w, _ in kept]
    assert all(e["commitment"] == query.commitment for e in paid)
    assert [e["contributor"] for e in paid] == [chain.address(who) for *_, who in kept]
    assert [e["amount"] for e in paid] == [expected[key(d, i)] for d, i, _, _ in kept]
    assert sum(e["amount"] for e in paid) == CUT  # exactly the cut
    assert events(router, "AttributionSplit", outcome) == [
        {"commitment": query.commitment, "method": int(Method.INFLUENCE), "contributorsCut": CUT, "payees": 5}
    ]
    gained = [x - y for x, y in zip(balances(market), before, strict=True)]
    per_account = [0] * 10
    for d, i, _, who in kept:
        per_account[who] += expected[key(d, i)]
    per_account[1] += PRICE * 7000 // 10_000  # the adapter's owner
    per_account[9] += PRICE - PRICE * 7000 // 10_000 - CUT  # the treasury
    assert gained == per_account
    assert datanet_claimables(market) == pro_rata_before  # nothing went the pro-rata way
    assert events(market["dn"], "Rewarded", outcome) == []


def test_leftover_units_go_to_the_largest_remainders_ties_by_datanet_then_index(market):
    attribution = market["attribution"]
    # equal weights: 200,000 / 3 leaves 2 units, equal remainders: (1,1) and (1,2) before (2,0)
    answer = [(2, 0, 1), (1, 2, 1), (1, 1, 1)]
    attribution.answer = AttributionOutput(Method.SPANS, named(market, answer))
    outcome = infer(market)
    assert outcome.ok, outcome.reason
    amounts = {(e["datanetId"], e["index"]): e["amount"] for e in events(market["router"], "Attributed", outcome)}
    assert amounts == {(1, 1): 66_667, (1, 2): 66_667, (2, 0): 66_666}
    # weights 1:1:1:1:3 of 200,000 / 7: remainders 4,4,4,4,5 (x 1/7): the weight-3 one first, then by id
    answer = [(2, 1, 1), (2, 0, 1), (1, 2, 1), (1, 1, 1), (1, 0, 3)]
    attribution.answer = AttributionOutput(Method.SPANS, named(market, answer))
    outcome = infer(market)
    paid = events(market["router"], "Attributed", outcome)
    expected = dict(split_exact(CUT, [(key(d, i), w) for d, i, w in answer]))
    assert {key(e["datanetId"], e["index"]): e["amount"] for e in paid} == expected
    assert sum(expected.values()) == CUT


def test_nothing_payable_in_the_answer_falls_back_to_the_pro_rata_path(market):
    attribution = market["attribution"]
    # pending, rejected, penalized, unknown index, a datanet the adapter does not declare, weight 0
    answer = [(1, 3, 9), (1, 4, 8), (1, 5, 7), (1, 77, 6), (3, 0, 5), (1, 0, 0)]
    attribution.answer = AttributionOutput(Method.INFLUENCE, named(market, answer))
    before, pro_rata_before = balances(market), datanet_claimables(market)
    outcome = infer(market)
    assert outcome.ok, outcome.reason
    assert events(market["router"], "Attributed", outcome) == []
    summary = events(market["router"], "AttributionSplit", outcome)
    assert [(s["payees"], s["contributorsCut"]) for s in summary] == [(0, CUT)]
    rewarded = events(market["dn"], "Rewarded", outcome)
    assert [(r["datanetId"], r["amount"]) for r in rewarded] == [(1, CUT * 6000 // 10_000), (2, CUT * 4000 // 10_000)]
    gained = [x - y for x, y in zip(datanet_claimables(market), pro_rata_before, strict=True)]
    assert 0 <= CUT - sum(gained) <= 2 and gained[7] == gained[8] == gained[6] == 0  # never to dropped ones
    assert [x - y for x, y in zip(balances(market), before, strict=True)][3:9] == [0] * 6


def test_a_record_that_labels_content_with_another_index_pays_nobody_for_it(market):
    """A training record's (datanet, index) labels are claims: its content hashes are what the snapshot roots
    check. An adapter owner who labels Alice's example (1, 0) with the index of his own contribution (1, 2) is
    caught by the registry holding another content there; the honest row beside it is paid the whole cut."""
    attribution, chain = market["attribution"], market["chain"]
    alice, mallory = named(market, [(1, 0, 900)])[0], named(market, [(1, 1, 100)])[0]
    relabelled = Contribution(1, 2, 900, alice.content_hash)  # account 5's index, account 3's content
    attribution.answer = AttributionOutput(Method.INFLUENCE, (relabelled, mallory))
    before = balances(market)
    outcome = infer(market)
    assert outcome.ok, outcome.reason
    paid = events(market["router"], "Attributed", outcome)
    assert [(e["datanetId"], e["index"], e["contentHash"], e["amount"]) for e in paid] == [
        (1, 1, mallory.content_hash, CUT)]  # fmt: skip
    gained = [x - y for x, y in zip(balances(market), before, strict=True)]
    assert gained[5] == 0 and gained[3] == 0 and gained[4] == CUT
    assert chain.call(market["dn"].functions.getContribution(1, 2))[0] != alice.content_hash


def test_without_a_record_or_output_the_precompile_is_not_asked(market):
    attribution = market["attribution"]
    asked = len(attribution.queries)
    pro_rata_before = datanet_claimables(market)
    outcome = infer(market, adapter=2)  # no training record
    assert outcome.ok, outcome.reason
    assert events(market["router"], "AttributionSplit", outcome) == []
    assert len(events(market["dn"], "Rewarded", outcome)) == 2
    outcome = infer(market, prompt=EOS_PROMPT)  # no output tokens to attribute
    assert outcome.ok, outcome.reason
    assert len(attribution.queries) == asked
    assert sum(datanet_claimables(market)) - sum(pro_rata_before) >= 2 * CUT - 10


def test_a_failing_attribution_reverts_the_whole_inference_with_its_reason(market):
    chain, attribution = market["chain"], market["attribution"]
    before, pro_rata_before = balances(market), datanet_claimables(market)
    router_balance, caller = chain.balance(INFERENCE_ROUTER), chain.balance(chain.address(0))
    attribution.revert_with = "unknown commitment"
    try:
        outcome = infer(market)
    finally:
        attribution.revert_with = None
    assert not outcome.ok and outcome.reason == "unknown commitment"
    assert balances(market) == before and datanet_claimables(market) == pro_rata_before
    assert chain.balance(INFERENCE_ROUTER) == router_balance  # the payment stayed with the caller
    assert caller - chain.balance(chain.address(0)) == outcome.gas_used * outcome.gas_price  # it paid gas only


ANSWER_TYPES = ["uint8", "uint256[]", "uint256[]", "uint256[]", "bytes32[]"]


@pytest.mark.parametrize(
    ("answer", "raw", "reason"),
    [
        ([(1, i, 1) for i in range(9)], None, "more than topK"),
        ([(1, 0, 5), (1, 0, 4)], None, "a contribution twice"),
        (None, eth_abi.encode(ANSWER_TYPES, [1, [1, 1], [0], [3, 4], [h(101), h(102)]]), "differ"),
        (None, eth_abi.encode(ANSWER_TYPES, [1, [1], [0], [3], []]), "differ"),
        (None, eth_abi.encode(ANSWER_TYPES[:4], [1, [1], [0], [3]]), ""),  # the format before content hashes
        (None, b"", "gave no answer"),
    ],
)
def test_malformed_attribution_answers_revert(market, answer, raw, reason):
    attribution = market["attribution"]
    attribution.answer = AttributionOutput(Method.INFLUENCE, named(market, answer or ()))
    attribution.raw = raw
    try:
        outcome = infer(market)
    finally:
        attribution.raw = None
    assert not outcome.ok and reason in (outcome.reason or "")


def test_a_new_version_clears_the_training_record(market):
    chain, registry = market["chain"], market["registry"]
    outcome = chain.ok(1, registry.functions.publishVersion(1, keccak(b"adapter-1 v2"), market["roots"]))
    assert events(registry, "TrainingRecordSet", outcome) == [{"adapterId": 1, "version": 2, "recordHash": b"\0" * 32}]
    assert chain.call(registry.functions.trainingRecordOf(1)) == b"\x00" * 32
    asked = len(market["attribution"].queries)
    assert infer(market).ok
    assert len(market["attribution"].queries) == asked  # pro rata again until a record of v2 is set
    chain.ok(1, registry.functions.setTrainingRecord(1, RECORD))
    market["attribution"].answer = AttributionOutput(Method.INFLUENCE, named(market, [(1, 0, 1)]))
    outcome = infer(market)
    assert [e["amount"] for e in events(market["router"], "Attributed", outcome)] == [CUT]


def test_gas_of_an_attributed_inference_stays_reasonable(market, capsys):
    attribution = market["attribution"]
    full = named(market, ((1, 0, 9), (1, 1, 7), (1, 2, 5), (2, 0, 3), (2, 1, 2)))
    attribution.answer = AttributionOutput(Method.INFLUENCE, full)
    attributed = infer(market)
    plain = infer(market, adapter=2)
    assert attributed.ok and plain.ok
    with capsys.disabled():
        print(f"\ngas: attributed infer (5 payees) {attributed.gas_used}, pro-rata infer {plain.gas_used}")
    assert attributed.gas_used < 400_000  # the doubles charge no precompile gas: this is the router's own


def test_a_chain_without_the_attribution_precompile_refuses_with_a_reason():
    chain = InProcessChain({INFERENCE: InferenceDouble()})  # nothing at 0x0a02: a chain without the precompile
    dn, registry = (
        chain.contract(DATANET_REGISTRY, "DatanetRegistry"),
        chain.contract(ADAPTER_REGISTRY, "AdapterRegistry"),
    )
    chain.ok(2, dn.functions.createDatanet("one", ""))
    chain.ok(3, dn.functions.contribute(1, h(1), 10))
    chain.ok(2, dn.functions.review(1, 0, True))
    chain.ok(1, registry.functions.register(keccak(b"a"), MODEL, PRICE, "", [1], [10_000], [b"\x00" * 32]))
    chain.ok(1, registry.functions.setTrainingRecord(1, RECORD))
    router = chain.contract(INFERENCE_ROUTER, "InferenceRouter")
    outcome = chain.send(9, router.functions.infer(1, PROMPT, 4, 0, 0, 1000, b"\x00" * 32), PRICE)
    assert not outcome.ok and outcome.reason == "attribution precompile gave no answer"


# --- the split rule against the Python reference ---------------------------------------------------------

HARNESS = """// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {WeightedSplit} from "InferenceRouter.sol";

/// TEST-ONLY harness (tests/test_datanet_contracts.py): exposes the router's split rule.
contract WeightedSplitHarness {
    function split(uint256 total, uint256[] memory weights, uint256[] memory idHi, uint256[] memory idLo)
        external
        pure
        returns (uint256[] memory)
    {
        return WeightedSplit.split(total, weights, idHi, idLo);
    }
}
"""


def compile_harness() -> dict[str, Any]:
    from lorachain.toolchain.solc import SRC_DIR, SolcError, compile_sources

    sources = {path.name: path.read_text() for path in SRC_DIR.glob("*.sol")}
    sources["WeightedSplitHarness.sol"] = HARNESS
    for attempt in range(3):  # solcjs sometimes fails to read its stdin pipe (EAGAIN) on a loaded machine
        try:
            return compile_sources(sources)["WeightedSplitHarness"]
        except SolcError as exc:
            if "EAGAIN" not in str(exc) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def random_case(rng: random.Random) -> tuple[int, list[tuple[int, int, int]]]:
    count = rng.randint(1, 32)
    magnitude = rng.choice((1, 3, 10, 10**6, 2**64, 2**128, 2**250))
    total = rng.choice((0, 1, 7, rng.randint(0, 10**6), rng.randint(0, 10**21), rng.randint(0, 2**255)))
    ids = rng.sample([(d, i) for d in range(1, 5) for i in range(40)], count)
    rows = [(d, i, rng.choice((0, 1, rng.randint(0, magnitude), magnitude))) for d, i in ids]
    if sum(w for *_, w in rows) == 0:
        rows[0] = (rows[0][0], rows[0][1], 1)
    if rng.random() < 0.3:  # many equal weights: ties decided by id
        rows = [(d, i, 5) for d, i, _ in rows]
    return total, rows


def test_the_solidity_split_equals_the_python_reference_and_sums_exactly():
    chain = InProcessChain({})
    harness = chain.deploy(compile_harness())
    rng = random.Random(20240917)
    cases = [random_case(rng) for _ in range(250)]
    cases += [(200_000, [(1, 0, 1), (1, 1, 1), (1, 2, 1)]), (10, [(2, 0, 1), (1, 9, 1), (1, 3, 1)]),
              (2**256 - 1, [(1, 0, 2**255), (1, 1, 2**255 - 1)]), (5, [(1, 0, 0), (1, 1, 4)])]  # fmt: skip
    for total, rows in cases:
        fn = harness.functions.split(total, [w for *_, w in rows], [d for d, _, _ in rows], [i for _, i, _ in rows])
        amounts = chain.call(fn)
        reference = dict(split_exact(total, [(key(d, i), w) for d, i, w in rows]))
        assert list(amounts) == [reference[key(d, i)] for d, i, _ in rows], (total, rows)
        assert sum(amounts) == total
    refused = chain.send(0, harness.functions.split(5, [0, 0], [1, 1], [0, 1]))
    assert not refused.ok and refused.reason == "total weight is zero"

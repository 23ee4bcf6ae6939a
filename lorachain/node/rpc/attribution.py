"""The ``lorachain_`` namespace: proof-of-attribution views over the chain's own receipts.

- ``lorachain_explainInference(txHash)``: which contributions shaped the answer of an
  ``InferenceRouter.infer`` transaction and what each was paid (:func:`lorachain.attribution.explain
  .explain_receipt`, the JSON ``lorachain attribution explain --json`` prints). A malformed hash is invalid
  params (-32602); an unknown transaction, a reverted one or one with no inference is -32000 with the reason.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from hexbytes import HexBytes

from lorachain.attribution.explain import ExplainError, explain_receipt
from lorachain.node.rpc.errors import server_error


@cache
def _router() -> Any:
    """The predeployed InferenceRouter as a web3 contract without a provider (only its ABI is used)."""
    from web3 import Web3

    from lorachain.genesis.predeploys import INFERENCE_ROUTER, contract_abi

    return Web3().eth.contract(address=INFERENCE_ROUTER, abi=contract_abi("InferenceRouter"))


def web3_receipt(receipt: dict[str, Any]) -> dict[str, Any]:
    """A JSON-RPC receipt with the types web3.py gives its receipts (bytes, ints, checksum addresses)."""
    from web3 import Web3

    def log(entry: dict[str, Any]) -> dict[str, Any]:
        numbers = {key: int(entry[key], 16) for key in ("logIndex", "transactionIndex", "blockNumber")}
        hashes = {key: HexBytes(entry[key]) for key in ("transactionHash", "blockHash", "data")}
        return {**entry, **numbers, **hashes, "address": Web3.to_checksum_address(entry["address"]),
                "topics": [HexBytes(t) for t in entry["topics"]]}  # fmt: skip

    return {**receipt, "status": int(receipt["status"], 16), "transactionHash": HexBytes(receipt["transactionHash"]),
            "blockNumber": int(receipt["blockNumber"], 16), "logs": [log(e) for e in receipt["logs"]]}  # fmt: skip


class AttributionApi:
    namespaces = ("lorachain",)

    def __init__(self, eth: Any) -> None:
        self.eth = eth

    def lorachain_explainInference(self, tx_hash: Any) -> dict[str, Any]:
        receipt = self.eth.eth_getTransactionReceipt(tx_hash)  # a malformed hash: invalid params
        if receipt is None:
            raise server_error("transaction not found")
        try:
            return explain_receipt(web3_receipt(receipt), _router())
        except ExplainError as exc:
            raise server_error(str(exc)) from None

"""Small namespaces: ``net_``, ``web3_``, ``txpool_``."""

from __future__ import annotations

from typing import Any

from eth_utils import keccak

from lorachain import __version__
from lorachain.node.node import Node
from lorachain.node.rpc import codec


class NetWeb3Api:
    namespaces = ("net", "web3")

    def __init__(self, node: Node) -> None:
        self.node = node

    def net_version(self) -> str:
        return str(self.node.chain.chain_id)

    def net_listening(self) -> bool:
        return True

    def net_peerCount(self) -> str:
        return "0x0"

    def web3_clientVersion(self) -> str:
        return f"lorachain/v{__version__}/python-py-evm"

    def web3_sha3(self, payload: Any) -> str:
        return codec.data(keccak(codec.parse_data(payload, "argument 0")))


class PersonalApi:
    """``personal_sign`` for the unlocked dev accounts (MetaMask-style parameter order)."""

    namespaces = ("personal",)

    def __init__(self, eth: Any) -> None:
        self.eth = eth

    def personal_sign(self, message: Any, address: Any, password: Any = None) -> str:
        return self.eth.eth_sign(address, message)


class TxPoolApi:
    namespaces = ("txpool",)

    def __init__(self, node: Node) -> None:
        self.node = node

    def txpool_status(self) -> dict[str, str]:
        pending, queued = self.node.pool.counts()
        return {"pending": codec.quantity(pending), "queued": codec.quantity(queued)}

    def txpool_content(self) -> dict[str, Any]:
        pending, queued = self.node.pool.split()

        def group(by_sender: dict[bytes, list[Any]]) -> dict[str, dict[str, Any]]:
            return {
                codec.address(sender): {str(tx.nonce): codec.transaction_json(tx, None, None, None) for tx in txs}
                for sender, txs in by_sender.items()
            }

        return {"pending": group(pending), "queued": group(queued)}

    def txpool_inspect(self) -> dict[str, Any]:
        pending, queued = self.node.pool.split()

        def summary(by_sender: dict[bytes, list[Any]]) -> dict[str, dict[str, str]]:
            return {
                codec.address(sender): {
                    str(tx.nonce): f"{codec.address(tx.to) or 'contract creation'}: {tx.value} wei + "
                    f"{tx.gas} gas x {tx.max_fee_per_gas} wei"
                    for tx in txs
                }
                for sender, txs in by_sender.items()
            }

        return {"pending": summary(pending), "queued": summary(queued)}

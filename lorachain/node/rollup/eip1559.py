"""EIP-1559 with the chain's own parameters: OP Stack chains use elasticity 6 and denominator 250 (Canyon)
where Ethereum uses 2 and 8 (op-geth's ``CalcBaseFee`` with ``config.optimism``)."""

from __future__ import annotations

from dataclasses import dataclass

from eth.abc import BlockHeaderAPI

OP_ELASTICITY = 6
OP_DENOMINATOR_CANYON = 250


@dataclass(frozen=True)
class Eip1559Params:
    elasticity: int = OP_ELASTICITY
    denominator: int = OP_DENOMINATOR_CANYON

    @classmethod
    def from_optimism_config(cls, optimism: dict) -> Eip1559Params:
        return cls(
            elasticity=int(optimism.get("eip1559Elasticity", OP_ELASTICITY)),
            denominator=int(optimism.get("eip1559DenominatorCanyon", optimism.get("eip1559Denominator",
                                                                                  OP_DENOMINATOR_CANYON))),
        )  # fmt: skip

    def next_base_fee(self, parent: BlockHeaderAPI) -> int:
        base_fee = parent.base_fee_per_gas
        target = parent.gas_limit // self.elasticity
        used = parent.gas_used
        if used == target:
            return base_fee
        if used > target:
            return base_fee + max(base_fee * (used - target) // target // self.denominator, 1)
        return max(base_fee - base_fee * (target - used) // target // self.denominator, 0)

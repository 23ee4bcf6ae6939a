"""Explain a paid inference from its receipt: the answer, the contributions that shaped it, what each got.

Everything comes from the InferenceRouter's events in the transaction's receipt (``Inference``,
``AttributionSplit``, one ``Attributed`` per payee), so an explanation is as auditable as the chain:
anyone with the receipt can check that the amounts sum to the contributors' cut. Each payee's content hash is
the one the router checked against the DatanetRegistry before paying it.
"""

from __future__ import annotations

from typing import Any

from lorachain.precompiles.attribution_abi import Method


class ExplainError(ValueError):
    """The transaction is not an inference paid through the router."""


def explain_receipt(receipt: Any, router: Any) -> dict[str, Any]:
    """A JSON-able explanation of one ``InferenceRouter.infer`` transaction (web3 receipt and contracts)."""
    from web3.logs import DISCARD

    if receipt["status"] != 1:
        raise ExplainError("the transaction reverted: nothing was inferred or paid")
    # only the router's own events count: any contract can emit lookalikes
    receipt = {**receipt, "logs": [e for e in receipt["logs"] if e["address"].lower() == router.address.lower()]}
    inferences = router.events.Inference().process_receipt(receipt, errors=DISCARD)
    if not inferences:
        raise ExplainError("the transaction holds no InferenceRouter inference")
    splits = router.events.AttributionSplit().process_receipt(receipt, errors=DISCARD)
    payees = router.events.Attributed().process_receipt(receipt, errors=DISCARD)
    out = []
    for event in inferences:
        args = event["args"]
        commitment = bytes(args["commitment"])
        split = next((s["args"] for s in splits if bytes(s["args"]["commitment"]) == commitment), None)
        rows = []
        for p in (p["args"] for p in payees if bytes(p["args"]["commitment"]) == commitment):
            rows.append({"datanet_id": p["datanetId"], "index": p["index"], "contributor": p["contributor"],
                         "content_hash": "0x" + bytes(p["contentHash"]).hex(), "weight": p["weight"],
                         "amount_wei": p["amount"]})  # fmt: skip
        total_weight = sum(r["weight"] for r in rows)
        for r in rows:
            r["share_ppm"] = r["weight"] * 1_000_000 // total_weight if total_weight else 0
        entry = {
            "adapter_id": args["adapterId"],
            "caller": args["caller"],
            "commitment": "0x" + commitment.hex(),
            "price_wei": args["price"],
            "output_tokens": args["outputTokens"],
            "text": args["text"],
            "attributed": split is not None and split["payees"] > 0,
            "contributions": rows,
        }
        if split is not None:
            entry["method"] = Method(split["method"]).name.lower()
            entry["contributors_cut_wei"] = split["contributorsCut"]
            entry["paid_wei"] = sum(r["amount_wei"] for r in rows)
        out.append(entry)
    return {"transaction": "0x" + bytes(receipt["transactionHash"]).hex(), "inferences": out}


def format_explanation(explanation: dict[str, Any]) -> str:
    """The explanation as text for a terminal."""
    lines = [f"transaction {explanation['transaction']}"]
    for inf in explanation["inferences"]:
        lines.append(f"adapter {inf['adapter_id']}  price {inf['price_wei']} wei  commitment {inf['commitment']}")
        lines.append(f"answer: {inf['text']!r}")
        if not inf["attributed"]:
            lines.append("no per-inference attribution: the contributors' cut went to the datanets pro rata")
            continue
        lines.append(f"attributed by {inf['method']}: {inf['paid_wei']} of {inf['contributors_cut_wei']} wei "
                     f"to {len(inf['contributions'])} contributions")  # fmt: skip
        lines.append(f"  {'datanet':>7} {'index':>6} {'share':>7}  {'paid (wei)':>22}  contributor")
        for r in inf["contributions"]:
            lines.append(f"  {r['datanet_id']:>7} {r['index']:>6} {r['share_ppm'] / 10_000:>6.2f}%  "
                         f"{r['amount_wei']:>22}  {r['contributor']}")  # fmt: skip
    return "\n".join(lines)

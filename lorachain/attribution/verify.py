"""Re-derive the attributed split of a paid inference from the chain alone, and compare it with what was paid.

For an ``InferenceRouter.infer`` call (the transaction itself, or a call a dApp made to the router, found
with ``debug_traceTransaction``'s call tracer), as of the state before its block:

1. the inference precompile is asked again with the exact input the router gave it (the adapter's content
   hash and the call's parameters): its commitment must be the one the ``Inference`` event logged;
2. with the adapter's training record, the attribution precompile is asked for the same top-k;
3. the rows the router would pay are kept (accepted contributions holding the named content, of a datanet
   the adapter declares, positive weight) and the contributors' cut is split by the router's rule
   (:func:`lorachain.attribution.splits.split_exact`, ties by (datanet id, index));
4. each expected payee is compared with the ``Attributed`` events: contribution, contributor, content hash,
   weight and wei.

State is read at the parent block: a transaction earlier in the same block that changed a contribution or
the adapter shows up as a mismatch naming that row.
"""

from __future__ import annotations

from typing import Any

from lorachain.attribution.explain import ExplainError, explain_receipt
from lorachain.attribution.splits import payee_key, split_exact
from lorachain.precompiles.abi import InferenceCall, InferenceOutput
from lorachain.precompiles.attribution import ATTRIBUTION_ADDRESS
from lorachain.precompiles.attribution_abi import AttributionOutput, AttributionQuery, Method
from lorachain.precompiles.inference import INFERENCE_ADDRESS


def verify_inference(w3: Any, router: Any, registry: Any, datanets: Any, tx_hash: str) -> dict[str, Any]:
    """``{"transaction", "verified", "expected": [...], "mismatches": [...], ...}`` for the (first) inference of a
    transaction; raises :class:`ExplainError` when it holds no paid inference."""
    receipt = w3.eth.get_transaction_receipt(tx_hash)
    explanation = explain_receipt(receipt, router)
    paid = explanation["inferences"][0]
    call = _router_call(w3, router, receipt)
    adapter_id, prompt, max_new, temperature, top_k, top_p, seed = call
    at = receipt["blockNumber"] - 1
    adapter = _adapter(registry, adapter_id, at)
    request = InferenceCall((adapter["contentHash"],), (), prompt, max_new, temperature, top_k, top_p, seed).encode()
    result = InferenceOutput.decode(_call(w3, INFERENCE_ADDRESS, request, at))
    mismatches: list[str] = []
    checked = ["commitment"]
    if "0x" + result.commitment.hex() != paid["commitment"]:
        mismatches.append(f"the inference now commits to 0x{result.commitment.hex()}, the event logged "
                          f"{paid['commitment']}")  # fmt: skip
    record = registry.functions.trainingRecordOf(adapter_id).call(block_identifier=at)
    expected: list[dict[str, Any]] = []
    method = None
    if bytes(record) != bytes(32) and result.output_ids and adapter["datanetIds"]:
        query = AttributionQuery(request, tuple(result.output_ids), result.commitment, bytes(record),
                                 tuple(adapter["datanetIds"]), tuple(bytes(r) for r in adapter["snapshotRoots"]),
                                 Method.AUTO, router.functions.ATTRIBUTION_TOP_K().call())  # fmt: skip
        answer = AttributionOutput.decode(_call(w3, ATTRIBUTION_ADDRESS, query.encode(), at))
        method = answer.method.name.lower()
        expected = _expected_payees(router, datanets, adapter, answer, at)
        checked.append("attribution")
    if paid.get("method") != method and (method is not None or paid["attributed"]):
        mismatches.append(f"attribution method {paid.get('method')!r} was paid, {method!r} is found now")
    mismatches += _compare(expected, paid["contributions"] if paid["attributed"] else [])
    return {"transaction": explanation["transaction"], "verified": not mismatches, "block": receipt["blockNumber"],
            "state_at": at, "method": method, "payees": len(expected), "checked": [*checked, "split"],
            "expected": expected, "mismatches": mismatches}  # fmt: skip


def _router_call(w3: Any, router: Any, receipt: Any) -> tuple:
    """The ``infer`` arguments of the router call in the transaction (the tx itself, or the first call to the
    router its call trace shows)."""
    tx = w3.eth.get_transaction(receipt["transactionHash"])
    calls = [tx["input"]] if (tx["to"] or "").lower() == router.address.lower() else []
    if not calls:
        params = [tx["hash"].to_0x_hex(), {"tracer": "callTracer"}]
        trace = w3.provider.make_request("debug_traceTransaction", params)
        calls = _calls_to(trace.get("result") or {}, router.address.lower())
    for data in calls:
        try:
            fn, args = router.decode_function_input(data)
        except ValueError:
            continue
        if fn.fn_name == "infer":
            return (args["adapterId"], args["prompt"], args["maxNewTokens"], args["temperatureMilli"], args["topK"],
                    args["topPMilli"], bytes(args["seed"]))  # fmt: skip
    raise ExplainError("no InferenceRouter.infer call found in the transaction")


def _calls_to(frame: dict[str, Any], address: str) -> list[str]:
    found = [frame["input"]] if (frame.get("to") or "").lower() == address and frame.get("input") else []
    for child in frame.get("calls") or ():
        found += _calls_to(child, address)
    return found


def _adapter(registry: Any, adapter_id: int, at: int) -> dict[str, Any]:
    fn = registry.functions.getAdapter(adapter_id)
    names = [c["name"] for c in fn.abi["outputs"][0]["components"]]
    return dict(zip(names, fn.call(block_identifier=at), strict=True))


def _call(w3: Any, to: bytes, data: bytes, at: int) -> bytes:
    return bytes(w3.eth.call({"to": w3.to_checksum_address(to), "data": "0x" + data.hex()}, at))


def _expected_payees(router: Any, datanets: Any, adapter: dict, answer: AttributionOutput, at: int) -> list[dict]:
    rows = answer.contributions
    contributors = datanets.functions.acceptedContributors(
        [r.datanet_id for r in rows], [r.index for r in rows], [r.content_hash for r in rows]
    ).call(block_identifier=at)
    declared = set(adapter["datanetIds"])
    kept = [(r, who) for r, who in zip(rows, contributors, strict=True)
            if int(who, 16) != 0 and r.weight > 0 and r.datanet_id in declared]  # fmt: skip
    if not kept:
        return []
    price = adapter["pricePerCall"]
    cut = price * router.functions.contributorsBps().call(block_identifier=at) // 10_000
    amounts = dict(split_exact(cut, [(payee_key(r.datanet_id, r.index), r.weight) for r, _ in kept]))
    return [{"datanet_id": r.datanet_id, "index": r.index, "contributor": who,
             "content_hash": "0x" + r.content_hash.hex(), "weight": r.weight,
             "amount_wei": amounts[payee_key(r.datanet_id, r.index)]} for r, who in kept]  # fmt: skip


def _compare(expected: list[dict], paid: list[dict]) -> list[str]:
    fields = ("datanet_id", "index", "contributor", "content_hash", "weight", "amount_wei")
    out = []
    if len(expected) != len(paid):
        out.append(f"{len(paid)} contributions were paid, {len(expected)} are found now")
    for i, (want, got) in enumerate(zip(expected, paid, strict=False)):
        for name in fields:
            if want[name] != got[name]:
                out.append(f"payee {i}: {name} paid {got[name]!r}, expected {want[name]!r}")
    return out

"""The divergence report: where a derived block and the sequencer's block of the same number first differ.

:func:`divergence_report` compares the headers and transaction lists; :func:`explain` goes on to the first
transaction whose execution differs and to the first differing state key and AI output, by asking the
sequencer the questions an operator would:

- ``first_differing_receipt``: our receipts against ``debug_getRawReceipts`` (status, cumulative gas, logs);
- ``first_differing_ai_output``: every call to the inference precompile, ours (re-traced here) against the
  sequencer's ``callTracer`` trace, in order; the first pair whose returned :class:`InferenceOutput` differs
  names the transaction, the call and the first differing output token; and, for that call, the first divergent
  layer (below);
- ``first_differing_state_key``: each transaction's ``prestateTracer`` diff, ours against the sequencer's (the
  first address, field and slot that differ); when no transaction's effects differ (a state edit no transaction
  made), the state tries themselves are walked: the sequencer's trie nodes come from ``eth_getProof`` for
  addresses (and slots) whose hashed keys lead to the node wanted, so the first differing key is found in key
  order, and named by address where one the block touched hashes to it.

The first divergent layer of a differing AI call (Verde-style: a dispute then re-runs one layer, not a model):
our own sidecar and the sequencer's side's sidecar each generate the call's request (rebuilt from the call's
input as the precompile builds it) with per-step, per-layer activation digests (``POST
/v1/lorachain/activations``, :mod:`lorachain.sidecar.wire`); the first ``(step, column)`` whose digests differ
is ``first_divergent_layer``. The sequencer's side's sidecar is the one this node already fetches adapters
from: the first ``--adapter-source`` of the form ``http://host:port/v1/lorachain/artifacts`` that is not our own
sidecar (how a validator names the sequencer's sidecar today; it is asked, never trusted: a hash it answers
only points where to look). Without one, or when it cannot answer, the entry still carries our own
``activation_root`` and ``first_divergent_layer.reason`` says why the layer is missing; when both sidecars
agree, the reason says so (the sequencer's recorded output is then not what its sidecar computes).

Every part is best effort: a question the sequencer cannot answer leaves an entry in ``explain_errors``, never
a lost report.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import rlp
from eth_utils import keccak

from lorachain.node.rollup.l1_client import L1Client
from lorachain.node.tracing import BlockReplay, make_tracer
from lorachain.precompiles.abi import InferenceCall, InferenceOutput
from lorachain.precompiles.inference import INFERENCE_ADDRESS
from lorachain.precompiles.sidecar_client import SidecarClient
from lorachain.sidecar import wire
from lorachain.sidecar.types import DecodingParams, GenerationRequest

log = logging.getLogger("lorachain.derivation")

ARTIFACTS_ROUTE = "/v1/lorachain/artifacts"
ACTIVATIONS_TIMEOUT_S = 120.0
MAX_GRIND_NIBBLES = 5  # trie depth up to which the sequencer's nodes are looked up (16^5 hashes at most)
_INFERENCE = "0x" + INFERENCE_ADDRESS.hex()
_ACCOUNT_FIELDS = ("nonce", "balance", "storageRoot", "codeHash")
_BLANK_ROOT = keccak(rlp.encode(b""))


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def block_summary(block) -> dict:
    """The fields :func:`divergence_report` reads, of a block this node holds (as eth_getBlockByNumber shows them)."""
    return {"hash": _hex(block.hash), "stateRoot": _hex(block.header.state_root),
            "transactionsRoot": _hex(block.header.transaction_root), "receiptsRoot": _hex(block.header.receipt_root),
            "gasUsed": hex(block.header.gas_used), "timestamp": hex(block.header.timestamp),
            "transactions": [{"hash": _hex(tx.hash)} for tx in block.transactions]}  # fmt: skip


def divergence_report(block, theirs: dict | None) -> dict:
    """The first differing block, its differing header fields and the first differing transaction."""
    ours = {"hash": _hex(block.hash), "stateRoot": _hex(block.header.state_root),
            "transactionsRoot": _hex(block.header.transaction_root),
            "receiptsRoot": _hex(block.header.receipt_root), "gasUsed": hex(block.header.gas_used),
            "timestamp": hex(block.header.timestamp)}  # fmt: skip
    report: dict = {"block": block.number, "derived": ours, "sequencer": None, "differing_fields": [],
                    "first_differing_transaction": None}  # fmt: skip
    if theirs is None:
        return report
    report["sequencer"] = {key: theirs.get(key) for key in ours}
    report["differing_fields"] = [key for key in ours if theirs.get(key) != ours[key]]
    their_txs = [tx["hash"] for tx in theirs.get("transactions", [])]
    for index, tx in enumerate(block.transactions):
        if index >= len(their_txs) or their_txs[index] != _hex(tx.hash):
            report["first_differing_transaction"] = index
            break
    else:
        if len(their_txs) > len(block.transactions):
            report["first_differing_transaction"] = len(block.transactions)
    return report


def explain(report: dict, chain: Any, block: Any, sequencer: L1Client) -> dict:
    """``report`` with the first differing receipt, AI output and state key added (as far as they are found)."""
    report.setdefault("first_differing_receipt", None)
    report.setdefault("first_differing_ai_output", None)
    report.setdefault("first_differing_state_key", None)
    errors: list[str] = []
    if report.get("sequencer") is None or report.get("first_differing_transaction") is not None:
        return report  # no sequencer block, or other transactions: their execution is not comparable
    number = hex(block.number)
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("first_differing_receipt", lambda: _receipts(chain, block, sequencer)),
        ("first_differing_ai_output", lambda: _ai_outputs(chain, block, sequencer, number)),
        ("first_differing_state_key", lambda: _state_by_transaction(chain, block, sequencer, number)),
    ]
    for key, step in steps:
        try:
            report[key] = step()
        except Exception as exc:  # the sequencer could not say (no debug API, a replay error, ...): go on
            errors.append(f"{key}: {type(exc).__name__}: {exc}")
    if report["first_differing_state_key"] is None and "stateRoot" in report["differing_fields"]:
        try:
            report["first_differing_state_key"] = StateTrieDiff(chain, block, sequencer).first_difference()
        except Exception as exc:
            errors.append(f"state trie walk: {type(exc).__name__}: {exc}")
    if errors:
        report["explain_errors"] = errors
        for error in errors:
            log.warning("divergence report at #%d incomplete: %s", block.number, error)
    return report


# -- receipts ------------------------------------------------------------------------------------
def _receipt_json(receipt: Any) -> dict:
    return {
        "status": hex(int.from_bytes(receipt.state_root, "big")) if len(receipt.state_root) <= 1 else None,
        "cumulativeGasUsed": hex(receipt.gas_used),
        "logs": [
            {"address": _hex(entry.address), "topics": [_hex(t.to_bytes(32, "big")) for t in entry.topics],
             "data": _hex(entry.data)}
            for entry in receipt.logs
        ],
    }  # fmt: skip


def _receipts(chain: Any, block: Any, sequencer: L1Client) -> dict | None:
    ours = chain.receipts(block)
    theirs = sequencer.call("debug_getRawReceipts", hex(block.number))
    for index, tx in enumerate(block.transactions):
        if index < len(theirs) and theirs[index] == _hex(ours[index].encode()):
            continue
        derived = _receipt_json(ours[index])
        their = sequencer.call("eth_getTransactionReceipt", _hex(tx.hash)) or {}
        sequencer_view = {"status": their.get("status"), "cumulativeGasUsed": their.get("cumulativeGasUsed"),
                          "logs": [{"address": (entry.get("address") or "").lower(), "topics": entry.get("topics"),
                                    "data": entry.get("data")} for entry in their.get("logs", [])]}  # fmt: skip
        fields = [key for key in derived if derived[key] != sequencer_view[key]]
        return {"transaction": index, "hash": _hex(tx.hash), "fields": fields or ["encoding"],
                "derived": derived, "sequencer": sequencer_view}  # fmt: skip
    return None


# -- traces --------------------------------------------------------------------------------------
def _our_traces(chain: Any, block: Any, tracer: str, config: dict | None = None) -> list[Any]:
    replay = BlockReplay(chain, block)
    results = []
    for index in range(len(block.transactions)):
        traced = make_tracer(tracer, config, None, None)
        replay.apply_next(traced, last=index == len(block.transactions) - 1)
        results.append(traced.result())
    return results


def _their_traces(sequencer: L1Client, number: str, tracer: str, config: dict | None = None) -> list[Any]:
    options: dict[str, Any] = {"tracer": tracer, "timeout": "60s"}
    if config:
        options["tracerConfig"] = config
    traces = sequencer.call("debug_traceBlockByNumber", number, options)
    return [entry.get("result") for entry in traces]


def _inference_calls(frame: dict | None) -> list[dict]:
    """The calls to the inference precompile in a callTracer frame, in execution order."""
    if not frame:
        return []
    found = [frame] if (frame.get("to") or "").lower() == _INFERENCE else []
    for child in frame.get("calls") or []:
        found += _inference_calls(child)
    return found


def _result_of(frame: dict) -> tuple:
    return frame.get("output"), frame.get("error")


def _decode_output(raw: str | None) -> InferenceOutput | None:
    try:
        return InferenceOutput.decode(bytes.fromhex((raw or "0x")[2:]))
    except Exception:
        return None


def _first_index_differing(a: tuple[int, ...], b: tuple[int, ...]) -> int | None:
    """The first position where two token sequences differ (one ending early counts), None if equal."""
    for index, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return index
    return None if len(a) == len(b) else min(len(a), len(b))


def _at(ids: tuple[int, ...], index: int | None) -> int | None:
    return ids[index] if index is not None and index < len(ids) else None


def _ai_outputs(chain: Any, block: Any, sequencer: L1Client, number: str) -> dict | None:
    ours = _our_traces(chain, block, "callTracer")
    theirs = _their_traces(sequencer, number, "callTracer")
    for index, tx in enumerate(block.transactions):
        our_calls = _inference_calls(ours[index])
        their_calls = _inference_calls(theirs[index] if index < len(theirs) else None)
        for call_index, (a, b) in enumerate(itertools.zip_longest(our_calls, their_calls)):
            if a is not None and b is not None and _result_of(a) == _result_of(b):
                continue
            entry: dict[str, Any] = {"transaction": index, "hash": _hex(tx.hash), "call": call_index}
            if a is None or b is None:
                entry["reason"] = f"the sequencer made {'more' if a is None else 'fewer'} AI calls"
                return entry
            mine, yours = _decode_output(a.get("output")), _decode_output(b.get("output"))
            if mine is None or yours is None:
                entry.update(reason="an AI call's result is not an inference output (reverted?)",
                             derived_output=a.get("output"), sequencer_output=b.get("output"),
                             derived_error=a.get("error"), sequencer_error=b.get("error"))  # fmt: skip
                return entry
            position = _first_index_differing(mine.output_ids, yours.output_ids)
            entry.update(
                token_index=position,
                derived_token=_at(mine.output_ids, position),
                sequencer_token=_at(yours.output_ids, position),
                derived_output_ids=list(mine.output_ids), sequencer_output_ids=list(yours.output_ids),
                derived_text=mine.text, sequencer_text=yours.text,
                commitments_differ=mine.commitment != yours.commitment,
            )  # fmt: skip
            entry.update(layer_divergence(chain, a.get("input"), mine.output_ids, yours.output_ids))
            return entry
    return None


# -- activation hashes ---------------------------------------------------------------------------
def sequencer_sidecar_url(chain: Any) -> str | None:
    """The sequencer's side's sidecar: the first HTTP adapter source ``<base>/v1/lorachain/artifacts`` whose base is
    not our own sidecar (see the module docstring)."""
    client = getattr(chain.inference, "client", None)
    ours = urlsplit(client.url).netloc if client is not None else None
    for source in getattr(chain.inference.sources, "sources", []):
        base = source.rstrip("/")
        if base.startswith("http://") and base.endswith(ARTIFACTS_ROUTE):
            base = base.removesuffix(ARTIFACTS_ROUTE)
            if urlsplit(base).netloc != ours:
                return base
    return None


def inference_request(client: Any, call_input: bytes) -> GenerationRequest:
    """The request the inference precompile sends ``client``'s sidecar for a call with input ``call_input``."""
    call = InferenceCall.decode(call_input)
    prompt_ids = tuple(client.tokenizer().encode(call.prompt).ids)
    params = DecodingParams(call.max_new_tokens, call.temperature_milli, call.top_k, call.top_p_milli, call.seed)
    adapter_id = None
    if len(call.adapters) == 1:
        adapter_id = _hex(call.adapters[0])
    elif call.adapters:
        adapter_id = client.merge([_hex(a) for a in call.adapters], list(call.weights_milli))
    return GenerationRequest(prompt_ids, adapter_id, params)


def _activations(client: Any, call_input: bytes) -> wire.ActivationTrace:
    return client.activations(inference_request(client, call_input))


def layer_divergence(chain: Any, call_input: str | None, derived_ids: tuple[int, ...],
                     sequencer_ids: tuple[int, ...], their_url: str | None = None) -> dict:  # fmt: skip
    """``activation_root`` (ours), ``sequencer_activation_root`` and ``first_divergent_layer`` ({step, column,
    layer, derived, sequencer, reason}) of one differing AI call; never raises (see the module docstring)."""
    layer: dict[str, Any] = {"step": None, "column": None, "layer": None, "derived": None, "sequencer": None,
                             "reason": None}  # fmt: skip
    entry: dict[str, Any] = {"activation_root": None, "sequencer_activation_root": None,
                             "first_divergent_layer": layer}  # fmt: skip
    try:
        data = bytes.fromhex((call_input or "0x")[2:])
        client = getattr(chain.inference, "client", None)
        if client is None:
            layer["reason"] = "this node runs without a sidecar"
            return entry
        ours = _activations(client, data)
    except Exception as exc:
        layer["reason"] = f"our sidecar could not trace the call: {type(exc).__name__}: {exc}"
        return entry
    entry["activation_root"] = _hex(ours.root)
    if ours.result.output_ids != tuple(derived_ids):
        layer["reason"] = "our sidecar's trace does not give our block's output (its model or adapters changed?)"
        return entry
    try:
        url = their_url or sequencer_sidecar_url(chain)
    except Exception as exc:
        layer["reason"] = f"the adapter sources could not be read: {type(exc).__name__}: {exc}"
        return entry
    if url is None:
        layer["reason"] = ("no sidecar of the sequencer's side is known: pass it to the validator as "
                           f"--adapter-source http://HOST:PORT{ARTIFACTS_ROUTE}")  # fmt: skip
        return entry
    entry["sequencer_sidecar"] = url
    try:
        theirs_client = SidecarClient(url, timeout_s=ACTIVATIONS_TIMEOUT_S)
        try:
            theirs = _activations(theirs_client, data)
        finally:
            theirs_client.close()
    except Exception as exc:
        layer["reason"] = f"the sequencer's sidecar at {url} gave no activation hashes: {type(exc).__name__}: {exc}"
        return entry
    entry["sequencer_activation_root"] = _hex(theirs.root)
    entry["sequencer_sidecar_output_ids"] = list(theirs.result.output_ids)
    entry["sequencer_sidecar_gives_sequencer_output"] = theirs.result.output_ids == tuple(sequencer_ids)
    if theirs.result.model_hash != ours.result.model_hash:
        entry["sequencer_sidecar_model_hash"] = _hex(theirs.result.model_hash)
    found = wire.first_divergence(ours.hashes, theirs.hashes)
    if found is None:
        layer["reason"] = "the activation hashes agree: the sequencer's sidecar computes our output" + (
            ", yet the sequencer's block holds another: the difference arose outside inference"
            if theirs.result.output_ids != tuple(sequencer_ids)
            else ", the sequencer's output ids too: the outputs differ in other fields (text, commitment)"
        )  # fmt: skip
        return entry
    step, column = found
    width = len((ours.hashes or theirs.hashes)[0])
    a, b = ours.hashes, theirs.hashes
    layer.update(step=step, column=column, layer=wire.column_name(column, width),
                 derived=_hex(a[step][column]) if step < len(a) and column < len(a[step]) else None,
                 sequencer=_hex(b[step][column]) if step < len(b) and column < len(b[step]) else None)  # fmt: skip
    return entry


def _state_by_transaction(chain: Any, block: Any, sequencer: L1Client, number: str) -> dict | None:
    """The first transaction whose state changes differ, and there the first address and field (or slot)."""
    config = {"diffMode": True}
    ours = _our_traces(chain, block, "prestateTracer", config)
    theirs = _their_traces(sequencer, number, "prestateTracer", config)
    for index, tx in enumerate(block.transactions):
        mine, yours = ours[index] or {}, (theirs[index] if index < len(theirs) else None) or {}
        if mine == yours:
            continue
        for side in ("post", "pre"):
            a, b = mine.get(side, {}), yours.get(side, {})
            for address in sorted(set(a) | set(b)):
                x, y = a.get(address) or {}, b.get(address) or {}
                if x == y:
                    continue
                entry = {"transaction": index, "hash": _hex(tx.hash), "address": address, "side": side}
                for field in ("balance", "nonce", "code"):
                    if x.get(field) != y.get(field):
                        return {**entry, "field": field, "derived": x.get(field), "sequencer": y.get(field)}
                slots_a, slots_b = x.get("storage") or {}, y.get("storage") or {}
                for slot in sorted(set(slots_a) | set(slots_b)):
                    if slots_a.get(slot) != slots_b.get(slot):
                        return {**entry, "field": "storage", "slot": slot, "derived": slots_a.get(slot),
                                "sequencer": slots_b.get(slot)}  # fmt: skip
        return {"transaction": index, "hash": _hex(tx.hash), "address": None, "field": None}
    return None


# -- walking the state tries ---------------------------------------------------------------------
def _nibbles(key: bytes) -> tuple[int, ...]:
    return tuple(n for byte in key for n in (byte >> 4, byte & 0x0F))


def _hp_decode(encoded: bytes) -> tuple[tuple[int, ...], bool]:
    nibbles = _nibbles(encoded)
    flag = nibbles[0]
    return (nibbles[1:] if flag & 1 else nibbles[2:]), bool(flag & 2)


def _hp_encode(nibbles: tuple[int, ...], leaf: bool) -> bytes:
    flag = (2 if leaf else 0) + (len(nibbles) & 1)
    padded = (flag, *nibbles) if len(nibbles) & 1 else (flag, 0, *nibbles)
    return bytes(padded[i] << 4 | padded[i + 1] for i in range(0, len(padded), 2))


def _ref_key(ref: Any) -> bytes | None:
    """What identifies a child: its hash, or the encoding of a node too small to be hashed (None: no child)."""
    if ref is None or ref == b"":
        return None
    if isinstance(ref, bytes):
        return ref
    encoded = rlp.encode(ref)
    return keccak(encoded) if len(encoded) >= 32 else encoded


def _children(node: Any) -> tuple[bytes | None, dict[int, Any]]:
    """A node as (value at its own path, children by next nibble): extensions and leaves are expanded into
    one-nibble steps (a shorter leaf or extension), so two tries are compared a nibble at a time."""
    if node == b"" or node is None:
        return None, {}
    if len(node) == 17:
        return (node[16] or None), {i: node[i] for i in range(16) if node[i] != b""}
    path, leaf = _hp_decode(node[0])
    if leaf:
        if not path:
            return node[1], {}
        return None, {path[0]: [_hp_encode(path[1:], True), node[1]]}
    if len(path) == 1:
        return None, {path[0]: node[1]}
    return None, {path[0]: [_hp_encode(path[1:], False), node[1]]}


class _Side:
    """One trie's nodes: ``fetch(hash, path)`` returns the encoded node with that hash at that nibble path."""

    def __init__(self, root: bytes, fetch: Callable[[bytes, tuple[int, ...]], bytes | None]) -> None:
        self.root, self.fetch = root, fetch

    def resolve(self, ref: Any, path: tuple[int, ...]) -> Any:
        if ref is None or ref == b"" or ref == _BLANK_ROOT:
            return b""
        if isinstance(ref, list):
            return ref
        if len(ref) < 32:
            return rlp.decode(ref)
        encoded = self.fetch(ref, path)
        if encoded is None:
            raise LookupError(f"trie node 0x{ref.hex()} at path {''.join(f'{n:x}' for n in path) or '(root)'} unknown")
        return rlp.decode(encoded)


def first_trie_difference(ours: _Side, theirs: _Side) -> tuple[tuple[int, ...], bytes | None, bytes | None] | None:
    """The first key (as nibbles, in key order) whose value differs between two tries, and both values."""

    def leftmost(side: _Side, ref: Any, path: tuple[int, ...]) -> tuple[tuple[int, ...], bytes]:
        value, children = _children(side.resolve(ref, path))
        if value is not None:
            return path, value
        nibble = min(children)
        return leftmost(side, children[nibble], (*path, nibble))

    def walk(a: Any, b: Any, path: tuple[int, ...]) -> tuple[tuple[int, ...], bytes | None, bytes | None] | None:
        value_a, children_a = _children(ours.resolve(a, path))
        value_b, children_b = _children(theirs.resolve(b, path))
        if value_a != value_b:
            return path, value_a, value_b
        for nibble in range(16):
            x, y = children_a.get(nibble), children_b.get(nibble)
            if _ref_key(x) == _ref_key(y):
                continue
            here = (*path, nibble)
            if x is None:
                key, value = leftmost(theirs, y, here)
                return key, None, value
            if y is None:
                key, value = leftmost(ours, x, here)
                return key, value, None
            return walk(x, y, here)
        return None

    if ours.root == theirs.root:
        return None
    return walk(ours.root, theirs.root, ())


def _grind(prefix: tuple[int, ...], width: int) -> bytes:
    """Some ``width``-byte string whose keccak starts with the nibbles ``prefix``."""
    if len(prefix) > MAX_GRIND_NIBBLES:
        raise LookupError(f"the tries differ deeper than {MAX_GRIND_NIBBLES} nibbles: not looked up")
    for counter in itertools.count():
        candidate = counter.to_bytes(width, "big")
        if _nibbles(keccak(candidate)[: (len(prefix) + 1) // 2])[: len(prefix)] == prefix:
            return candidate
    raise AssertionError("unreachable")


class StateTrieDiff:
    """The first differing key of the derived and the sequencer's state tries at one block (see module doc)."""

    def __init__(self, chain: Any, block: Any, sequencer: L1Client) -> None:
        self.db = chain.chaindb.db
        self.block, self.sequencer, self.number = block, sequencer, hex(block.number)
        self.their_nodes: dict[bytes, bytes] = {}
        self.addresses = {keccak(a): a for a in _touched_addresses(chain, block)}

    def _remember(self, proof: list[str]) -> None:
        for node in proof:
            encoded = bytes.fromhex(node[2:])
            self.their_nodes[keccak(encoded)] = encoded

    def _proof(self, address: bytes, slots: list[bytes] = ()) -> dict:  # type: ignore[assignment]
        proof = self.sequencer.call("eth_getProof", _hex(address), [_hex(s) for s in slots], self.number)
        self._remember(proof["accountProof"])
        for entry in proof.get("storageProof", []):
            self._remember(entry["proof"])
        return proof

    def _their_account_node(self, ref: bytes, path: tuple[int, ...]) -> bytes | None:
        if ref not in self.their_nodes:
            self._proof(_grind(path, 20))
        return self.their_nodes.get(ref)

    def _ours(self, ref: bytes, path: tuple[int, ...]) -> bytes | None:
        try:
            return bytes(self.db[ref])
        except KeyError:
            return None

    def first_difference(self) -> dict | None:
        their_root = bytes.fromhex(self.sequencer.call("eth_getBlockByNumber", self.number, False)["stateRoot"][2:])
        for address in sorted(self.addresses.values()):  # their nodes along the paths of accounts the block touched
            self._proof(address)
        found = first_trie_difference(_Side(self.block.header.state_root, self._ours),
                                      _Side(their_root, self._their_account_node))  # fmt: skip
        if found is None:
            return None
        path, ours, theirs = found
        account_hash = bytes(path[i] << 4 | path[i + 1] for i in range(0, len(path), 2))
        address = self.addresses.get(account_hash)
        mine, yours = _account(ours), _account(theirs)
        fields = [f for f in _ACCOUNT_FIELDS if (mine or {}).get(f) != (yours or {}).get(f)]
        only_in = "sequencer" if mine is None else "derived" if yours is None else None
        entry: dict[str, Any] = {"transaction": None, "address": _hex(address) if address else None,
                                 "account_hash": _hex(account_hash), "only_in": only_in, "fields": fields,
                                 "derived": mine, "sequencer": yours}  # fmt: skip
        if address is not None and mine and yours and "storageRoot" in fields:
            entry["storage"] = self._storage_difference(address, mine["storageRoot"], yours["storageRoot"])
        return entry

    def _storage_difference(self, address: bytes, ours: str, theirs: str) -> dict | None:
        def their_node(ref: bytes, path: tuple[int, ...]) -> bytes | None:
            if ref not in self.their_nodes:
                self._proof(address, [_grind(path, 32)])
            return self.their_nodes.get(ref)

        found = first_trie_difference(_Side(bytes.fromhex(ours[2:]), self._ours),
                                      _Side(bytes.fromhex(theirs[2:]), their_node))  # fmt: skip
        if found is None:
            return None
        path, mine, yours = found
        slot_hash = bytes(path[i] << 4 | path[i + 1] for i in range(0, len(path), 2))
        return {"slot_hash": _hex(slot_hash), "derived": _slot_value(mine), "sequencer": _slot_value(yours)}


def _account(encoded: bytes | None) -> dict | None:
    if encoded is None:
        return None
    nonce, balance, storage_root, code_hash = rlp.decode(encoded)
    return {"nonce": int.from_bytes(nonce, "big"), "balance": hex(int.from_bytes(balance, "big")),
            "storageRoot": _hex(storage_root), "codeHash": _hex(code_hash)}  # fmt: skip


def _slot_value(encoded: bytes | None) -> str | None:
    return None if encoded is None else hex(int.from_bytes(rlp.decode(encoded), "big"))


def _touched_addresses(chain: Any, block: Any) -> set[bytes]:
    """Addresses the block names: senders, recipients, log emitters, the coinbase."""
    found = {bytes(block.header.coinbase)}
    for tx in block.transactions:
        found.add(bytes(tx.sender))
        if tx.to:
            found.add(bytes(tx.to))
    for receipt in chain.receipts(block):
        found.update(bytes(entry.address) for entry in receipt.logs)
    return found


# -- output roots posted on L1 -------------------------------------------------------------------
OUTPUT_COMPONENTS = ("stateRoot", "withdrawalStorageRoot", "blockHash")


def output_components(output: Any) -> dict:
    """An :class:`~lorachain.node.rollup.outputs.Output`'s roots, by the names the report uses."""
    return {"stateRoot": _hex(output.state_root), "withdrawalStorageRoot": _hex(output.withdrawal_storage_root),
            "blockHash": _hex(output.block_hash)}  # fmt: skip


def output_root_report(index: int, number: int, posted: bytes, ours: Any, candidates: dict[str, list[dict]]) -> dict:
    """The report of a posted output root unlike ours: the output index, the L2 block, both roots, and, where the
    posted root's preimage can be found among the known values of each component (``candidates``: ours at this
    block, the neighbouring blocks' and the sequencer's), the components that differ and the first of them.

    A root is a hash: with no known preimage the differing component cannot be told (``posted_preimage`` None)."""
    from lorachain.node.rollup.outputs import output_root_v0

    mine = output_components(ours)
    report: dict = {"kind": "output_root", "output_index": index, "block": number, "posted_output_root": _hex(posted),
                    "derived_output_root": _hex(ours.root), "derived": mine, "posted_preimage": None,
                    "differing_components": None, "first_differing_component": None}  # fmt: skip
    options = [[mine[name]] + [c[name] for c in candidates.get(name, []) if c[name] != mine[name]]
               for name in OUTPUT_COMPONENTS]  # fmt: skip
    found = []
    for combo in itertools.product(*options):
        state, withdrawals, block_hash = (bytes.fromhex(v[2:]) for v in combo)
        if output_root_v0(state, withdrawals, block_hash) == posted:
            found.append(dict(zip(OUTPUT_COMPONENTS, combo, strict=True)))
    if found:
        preimage = min(found, key=lambda p: sum(p[n] != mine[n] for n in OUTPUT_COMPONENTS))
        differing = [name for name in OUTPUT_COMPONENTS if preimage[name] != mine[name]]
        report.update(posted_preimage=preimage, differing_components=differing,
                      first_differing_component=differing[0] if differing else None)  # fmt: skip
        for name in differing:  # where the posted value comes from
            sources = [c.get("source") for c in candidates.get(name, []) if c[name] == preimage[name]]
            report.setdefault("posted_component_sources", {})[name] = sources
    else:
        report["explanation"] = ("the posted root is the hash of no combination of known component values "
                                 "(ours, the neighbouring blocks', the sequencer's): the differing component "
                                 "cannot be told from a hash")  # fmt: skip
    return report

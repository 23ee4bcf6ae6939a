"""Prometheus metrics of the node (served at /metrics on the RPC port, as geth's --metrics does), and the registry
of the rollup's own services (batcher, proposer: :data:`SERVICE_REGISTRY`, each process serving it with
``--metrics.port``, as op-batcher and op-proposer do)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry()
SERVICE_REGISTRY = CollectorRegistry()  # the batcher's and the proposer's


def serve_service_metrics(port: int, addr: str = "127.0.0.1") -> None:
    """Serve :data:`SERVICE_REGISTRY` at ``http://addr:port/metrics`` from a background thread."""
    start_http_server(port, addr, registry=SERVICE_REGISTRY)


HEAD = Gauge("lorachain_chain_head_block", "Number of the canonical head block", registry=REGISTRY)
BLOCKS = Counter("lorachain_blocks_built_total", "Blocks built by this node", registry=REGISTRY)
BLOCK_TXS = Counter("lorachain_block_transactions_total", "Transactions included in blocks", registry=REGISTRY)
BLOCK_GAS = Counter("lorachain_block_gas_used_total", "Gas used by built blocks", registry=REGISTRY)
BLOCK_TIME = Histogram(
    "lorachain_block_build_seconds",
    "Time to execute and commit one block",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
TX_RECEIVED = Counter("lorachain_txpool_received_total", "Transactions admitted to the pool", registry=REGISTRY)
TX_REJECTED = Counter("lorachain_txpool_rejected_total", "Transactions refused by the pool", registry=REGISTRY)
POOL_PENDING = Gauge("lorachain_txpool_pending", "Executable transactions in the pool", registry=REGISTRY)
POOL_QUEUED = Gauge("lorachain_txpool_queued", "Nonce-gapped transactions in the pool", registry=REGISTRY)
RPC_REQUESTS = Counter(
    "lorachain_rpc_requests_total", "JSON-RPC calls by method and outcome", ["method", "outcome"], registry=REGISTRY
)
RPC_LATENCY = Histogram(
    "lorachain_rpc_seconds",
    "JSON-RPC call latency by method",
    ["method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5),
    registry=REGISTRY,
)
DERIVED = Counter("lorachain_derivation_blocks_total", "L2 blocks derived from L1 + DA", registry=REGISTRY)
DROPPED_BATCHES = Counter("lorachain_derivation_dropped_batches_total", "Batches that broke a rule", registry=REGISTRY)
DIVERGENCES = Counter(
    "lorachain_derivation_divergences_total", "Derived blocks unlike the sequencer's", registry=REGISTRY
)
L1_POSITION = Gauge("lorachain_derivation_l1_block", "Next L1 block derivation reads", registry=REGISTRY)
WS_CONNECTIONS = Gauge("lorachain_rpc_ws_connections", "Open WebSocket connections", registry=REGISTRY)


def observe_block(built: Any, seconds: float) -> None:
    BLOCKS.inc()
    BLOCK_TXS.inc(len(built.block.transactions))
    BLOCK_GAS.inc(built.block.header.gas_used)
    BLOCK_TIME.observe(seconds)
    HEAD.set(built.block.number)

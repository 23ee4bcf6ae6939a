"""Wiring: a Node with its JSON-RPC server, run until a signal."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any

from lorachain.node.node import Node
from lorachain.node.rpc.dev import DevApi
from lorachain.node.rpc.eth import EthApi
from lorachain.node.rpc.filters import FilterApi
from lorachain.node.rpc.misc import NetWeb3Api, PersonalApi, TxPoolApi
from lorachain.node.rpc.server import RpcDispatcher, RpcServer

log = logging.getLogger("lorachain.node")


def build_dispatcher(node: Node, dev: bool = True) -> RpcDispatcher:
    dispatcher = RpcDispatcher()
    dispatcher.barrier = node.committed
    eth = EthApi(node)
    apis: list[Any] = [eth, FilterApi(node), NetWeb3Api(node), TxPoolApi(node)]
    try:
        from lorachain.node.rpc.debug import DebugApi
    except ImportError:  # pragma: no cover - debug namespace is optional while it is being built
        DebugApi = None  # type: ignore[assignment]
    if DebugApi is not None:
        apis.append(DebugApi(node))
    if dev:
        apis.extend([DevApi(node), PersonalApi(eth)])
    if node.chain.genesis.op_stack:
        from lorachain.node.rpc.optimism import OptimismApi

        apis.append(OptimismApi(node))
    from lorachain.node.rpc.attribution import AttributionApi

    apis.append(AttributionApi(eth))
    for api in apis:
        dispatcher.register_object(api)
    modules = sorted({name.split("_", 1)[0] for name in dispatcher.methods} | {"rpc"})
    dispatcher.register("rpc_modules", lambda: dict.fromkeys(modules, "1.0"))
    return dispatcher


def health(node: Node) -> dict[str, Any]:
    head = node.chain.head
    return {"ok": True, "chainId": node.chain.chain_id, "head": head.block_number, "hash": "0x" + head.hash.hex()}


async def serve(node: Node, host: str, port: int, cors: str = "*", dev: bool = True) -> None:
    """Run the node and its RPC server until SIGINT/SIGTERM, then shut down cleanly."""
    server = RpcServer(build_dispatcher(node, dev), cors_origins=cors, health=lambda: health(node))
    bound = await server.start(host, port)
    node.start()
    log.info("JSON-RPC (HTTP + WS) listening on http://%s:%d chain_id=%d head=%d",
             host, bound, node.chain.chain_id, node.chain.head.block_number)  # fmt: skip
    print(f"lorachain node ready: http://{host}:{bound} (chain id {node.chain.chain_id})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
    await node.stop()

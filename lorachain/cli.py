"""The ``lorachain`` command line: init, node, import, export (and more as the chain grows)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from lorachain.genesis.genesis import GenesisError, devnet_genesis, load_genesis, parse_genesis
from lorachain.node.chain import Blockchain, ChainError
from lorachain.node.gc_tuning import tune_for_node
from lorachain.node.store import SYNC_MODES
from lorachain.sidecar.types import SidecarError

log = logging.getLogger("lorachain")


def _setup_logging(level: str, fmt: str) -> None:
    if fmt == "json":
        handler = logging.StreamHandler()
        handler.setFormatter(_JsonFormatter())
        logging.basicConfig(level=level.upper(), handlers=[handler])
    else:
        logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)-5s %(name)s: %(message)s")
    logging.getLogger("eth").setLevel(logging.WARNING)
    logging.getLogger("aiohttp").setLevel(logging.WARNING)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "t": self.formatTime(record),
                "lvl": record.levelname.lower(),
                "logger": record.name,
                "msg": record.getMessage(),
            }
        )


def cmd_init(args: argparse.Namespace) -> int:
    genesis = load_genesis(args.genesis) if args.genesis else parse_genesis(devnet_genesis())
    chain = Blockchain.initialize(args.datadir, genesis)
    print(f"initialised {args.datadir}: chain id {chain.chain_id}, genesis 0x{chain.head.hash.hex()}")
    chain.close()
    return 0


def _open_or_init(datadir: str, genesis_path: str | None, dev: bool, sync: str = "full") -> Blockchain:
    if genesis_path:
        return Blockchain.initialize(datadir, load_genesis(genesis_path), sync=sync)
    if (Path(datadir) / "chaindata" / "data.mdb").exists():
        return Blockchain.open(datadir, sync=sync)
    if dev:
        return Blockchain.initialize(datadir, parse_genesis(devnet_genesis()), sync=sync)
    raise ChainError(f"{datadir} holds no chain: run `lorachain init --genesis FILE --datadir {datadir}` or use --dev")


def cmd_node(args: argparse.Namespace) -> int:
    from eth_utils import to_canonical_address

    from lorachain.node.app import serve
    from lorachain.node.node import MINING_AUTO, MINING_INTERVAL, MINING_MANUAL, Node, NodeConfig

    datadir = args.datadir or tempfile.mkdtemp(prefix="lorachain-dev-")
    sync = args.db_sync or ("none" if args.dev else "full")
    chain = _open_or_init(datadir, args.genesis, args.dev, sync)
    if sync != "full":
        log.info("database sync %r: a killed node loses nothing; a power loss may lose recent blocks", sync)
    mining = MINING_MANUAL if args.no_mining else MINING_INTERVAL if args.block_time else MINING_AUTO
    config = NodeConfig(
        mining=mining,
        block_time=args.block_time or 2.0,
        coinbase=to_canonical_address(args.coinbase),
        gas_limit=args.gas_limit,
        allow_unprotected_txs=args.allow_unprotected_txs,
        wait_for_inclusion=0.0 if args.no_wait_for_inclusion else 5.0,
    )
    if args.sidecar:
        from lorachain.precompiles.sidecar_client import SidecarClient

        chain.inference.client = SidecarClient(args.sidecar)
        if args.fault == "tamper-ai-output" and args.role == "sequencer":  # tests only: a lying sequencer
            from lorachain.node.rollup.faults import TamperedInference

            chain.inference.client = TamperedInference(chain.inference.client)
    if args.adapter_source:
        from lorachain.precompiles.adapter_sources import AdapterSources

        chain.inference.sources = AdapterSources(args.adapter_source)
    if args.rollup_config or args.l1:
        if not (args.rollup_config and args.l1):
            raise SystemExit("--rollup-config and --l1 go together")
        if not chain.genesis.op_stack:
            raise SystemExit("--rollup-config needs an OP Stack genesis (config.optimism): see `lorachain rollup init`")
        from lorachain.node.rollup.config import RollupConfig, RollupConfigError
        from lorachain.node.rollup.l1_client import L1Client
        from lorachain.node.rollup.sequencer import Sequencer

        try:
            rollup = RollupConfig.load(Path(args.rollup_config))
        except RollupConfigError as exc:
            raise SystemExit(str(exc)) from None
        if rollup.l2_chain_id != chain.chain_id:
            raise SystemExit(f"rollup config is for chain {rollup.l2_chain_id}, the datadir holds {chain.chain_id}")
        from lorachain.da_client.client import DAClient

        if args.role == "validator":
            from lorachain.node.rollup.derivation import Deriver

            config.deriver = Deriver(rollup, L1Client(args.l1), chain, Path(datadir) / "derivation.json",
                                     da=DAClient(args.da) if args.da else None,
                                     sequencer=L1Client(args.sequencer) if args.sequencer else None)  # fmt: skip
            config.divergence_report = Path(datadir) / "divergence.json"
            config.mining = MINING_MANUAL
        else:
            config.sequencer = Sequencer(rollup, L1Client(args.l1), da=DAClient(args.da) if args.da else None)
            config.fault = args.fault
        if args.p2p_listen or args.p2p_static or args.p2p_bootnodes:  # unsafe-block gossip (lorachain.node.p2p)
            from lorachain.node import p2p

            p2p.attach(config, chain, rollup, args, datadir)
        if args.coinbase == "0x" + "00" * 20:  # priority fees go to the SequencerFeeVault, as on OP Stack chains
            from lorachain.node.rollup.l2_fees import SEQUENCER_FEE_VAULT

            config.coinbase = SEQUENCER_FEE_VAULT
    node = Node.with_dev_accounts(chain, config) if args.dev else Node(chain, config)
    if config.unsafe is not None:
        from lorachain.node import p2p

        p2p.attach_node(node)
    log.info("datadir %s, head #%d, mining %s", datadir, chain.head.block_number, mining)
    run = serve(node, args.http_addr, args.http_port, cors=args.http_corsdomain, dev=args.dev)
    tune_for_node()  # after set-up: what exists now is frozen out of collections
    if args.profile:
        import cProfile

        with cProfile.Profile() as profiler:
            asyncio.run(run)
        profiler.dump_stats(args.profile)
    else:
        asyncio.run(run)
    return 0


def cmd_export(args: argparse.Namespace) -> int:

    chain = Blockchain.open(args.datadir)
    last = chain.head.block_number if args.last is None else min(args.last, chain.head.block_number)
    count = 0
    with open(args.file, "wb") as out:
        for number in range(args.first, last + 1):
            out.write(chain.encode_block(chain.block_by_header(chain.header_by_number(number))))
            count += 1
    print(f"exported {count} blocks ({args.first}..{last}) to {args.file}")
    chain.close()
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    chain = _open_or_init(args.datadir, args.genesis, dev=args.genesis is None)
    try:
        with open(args.file, "rb") as stream:
            imported, skipped = _import_stream(chain, stream)
    except (ValueError, rlp.exceptions.RLPException, OSError) as exc:
        head = chain.head.block_number
        chain.close()
        raise ChainError(f"import stopped at head #{head}: {exc}") from exc
    print(f"imported {imported} blocks (skipped {skipped} known), head #{chain.head.block_number}")
    chain.close()
    return 0


def _import_stream(chain: Blockchain, stream: Any) -> tuple[int, int]:
    from lorachain.node.rlp_stream import iter_rlp_blocks

    imported = skipped = 0
    for raw_block in iter_rlp_blocks(stream):
        vm_class = chain.chain_class.get_vm_class_for_block_number(_block_number(raw_block))
        block = rlp.decode(raw_block, sedes=vm_class.get_block_class())
        if block.number == 0:
            if block.hash != chain.header_by_number(0).hash:
                raise ChainError("the stream's genesis block differs from this datadir's genesis")
            skipped += 1
            continue
        if block.number <= chain.head.block_number and chain.is_canonical(block.header):
            skipped += 1
            continue
        chain.import_block(block)
        imported += 1
    return imported, skipped


def _block_number(raw_block: bytes) -> int:
    header = rlp.decode(raw_block, strict=False)[0]
    return int.from_bytes(header[8], "big")


import rlp  # noqa: E402  (used by import/export helpers above)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lorachain", description="lorachain: a payable-AI rollup node")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    # The logging flags are accepted after the subcommand too (`lorachain node --log-level debug`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default=argparse.SUPPRESS)
    common.add_argument("--log-format", choices=["text", "json"], default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_parser = sub.add_parser

    def add_parser(name: str, **kwargs: object) -> argparse.ArgumentParser:
        return _add_parser(name, parents=[common], **kwargs)  # type: ignore[arg-type]

    sub.add_parser = add_parser  # type: ignore[method-assign]

    p = sub.add_parser("init", help="initialise a datadir from a geth-format genesis.json")
    p.add_argument("--genesis", help="genesis.json (default: the built-in devnet genesis)")
    p.add_argument("--datadir", required=True)
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("node", help="run an execution node with JSON-RPC")
    p.add_argument("--dev", action="store_true", help="devnet: built-in genesis, unlocked dev accounts, automine")
    p.add_argument("--datadir", help="data directory (default with --dev: a new temporary one)")
    p.add_argument("--db.sync", dest="db_sync", choices=SYNC_MODES, default=None,
                   help="fsync policy of each block's commit: full (data + meta, survives power loss; the default), "
                   "data (meta page flushed every second: a power loss may undo the last block), none (flushed "
                   "every second; a killed process loses nothing, a power loss may lose or corrupt recent blocks; "
                   "the default with --dev, whose chain Hardhat and Anvil keep in memory)")  # fmt: skip
    p.add_argument("--genesis", help="initialise from this genesis.json if the datadir is new")
    p.add_argument("--http.addr", dest="http_addr", default="127.0.0.1")
    p.add_argument("--http.port", dest="http_port", type=int, default=8545)
    p.add_argument("--http.corsdomain", dest="http_corsdomain", default="*")
    p.add_argument("--block-time", type=float, default=0, help="seconds between blocks (0 = automine)")
    p.add_argument("--no-mining", action="store_true", help="build blocks only on evm_mine")
    p.add_argument("--gas-limit", type=int, default=None, help="block gas limit (default: parent's)")
    p.add_argument("--coinbase", default="0x" + "00" * 20, help="fee recipient of built blocks")
    p.add_argument(
        "--no-wait-for-inclusion",
        action="store_true",
        help="automine: answer eth_sendRawTransaction at once (as geth) instead of after the block (as Hardhat)",
    )
    p.add_argument(
        "--sidecar",
        help="URL of the inference sidecar the AI precompile calls (e.g. http://127.0.0.1:8600); without one, "
        "transactions that call it wait in the pool and eth_call answers an error",
    )
    p.add_argument(
        "--adapter-source",
        action="append",
        default=[],
        metavar="DIR_OR_URL",
        help="where to fetch registered adapters and training records the sidecar lacks: a folder or HTTP base "
        "URL of 0x<hash>.safetensors files, e.g. another sidecar's http://host:8600/v1/lorachain/artifacts, or "
        "the DA layer, da+http://host:3100 (repeat)",
    )
    p.add_argument("--rollup-config", help="rollup.json: run as a node of this OP Stack L2 (needs --l1)")
    p.add_argument("--l1", help="L1 JSON-RPC URL: the sequencer's L1 origins and deposits, the validator's source")
    p.add_argument(
        "--role",
        choices=["sequencer", "validator"],
        default="sequencer",
        help="with --rollup-config: build the L2 (sequencer) or derive it from L1 + DA (validator)",
    )
    p.add_argument("--da", help="DA server URL (eigenda-proxy API): alt-DA batches for derivation and the safe head")
    p.add_argument("--sequencer", help="validator: the sequencer's JSON-RPC URL, to compare every derived block")
    # tests only: a lying sequencer, for the validator's divergence checks
    p.add_argument("--fault", choices=["tamper-state", "tamper-ai-output"], default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--p2p.listen",
        dest="p2p_listen",
        help="rollup: gossip unsafe blocks (libp2p), listening on this "
        "multiaddr, e.g. /ip4/127.0.0.1/tcp/9222 (any --p2p.* peer option also turns gossip on)",
    )
    p.add_argument(
        "--p2p.static",
        dest="p2p_static",
        action="append",
        help="static peer multiaddr(s) "
        "/ip4/IP/tcp/PORT/p2p/PEERID, comma-separated or repeated: dialled and kept connected",
    )
    p.add_argument(
        "--p2p.bootnodes",
        dest="p2p_bootnodes",
        action="append",
        help="bootnode multiaddr(s), comma-separated or repeated: dialled at start",
    )
    p.add_argument(
        "--p2p.priv.path",
        dest="p2p_priv_path",
        help="the node's libp2p identity key (hex secp256k1; made if missing; default DATADIR/p2p/node.key)",
    )
    p.add_argument(
        "--p2p.sequencer.key",
        dest="p2p_sequencer_key",
        help="sequencer: the unsafe-block signer's private key (default with --dev: dev account 7)",
    )
    p.add_argument(
        "--p2p.unsafe-signer",
        dest="p2p_unsafe_signer",
        help="validator: the unsafe-block signer "
        "address (default: unsafe_block_signer of the rollup config; with --dev: dev account 7)",
    )
    p.add_argument(
        "--p2p.ban-threshold",
        dest="p2p_ban_threshold",
        type=float,
        default=None,
        help="score at which a peer sending invalid blocks is banned and disconnected (default -40)",
    )
    p.add_argument("--p2p.trace", dest="p2p_trace", help=argparse.SUPPRESS)  # benchmarks: publish/apply times, JSONL
    p.add_argument("--profile", help="write a cProfile of the node's run to this file on exit")
    p.add_argument("--allow-unprotected-txs", action="store_true", help="accept legacy txs without chain id")
    p.set_defaults(func=cmd_node)

    p = sub.add_parser("export", help="write canonical blocks as an RLP stream (geth export)")
    p.add_argument("file")
    p.add_argument("--datadir", required=True)
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--last", type=int, default=None)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="import an RLP block stream, validating every block (geth import)")
    p.add_argument("file")
    p.add_argument("--datadir", required=True)
    p.add_argument("--genesis", help="genesis.json for a new datadir (default: devnet genesis)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("sidecar", help="run the inference sidecar (exact LoRA inference over HTTP)")
    p.add_argument("--model", default=None, help="checkpoint folder or artifact file (default: the devnet model)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8600)
    p.add_argument("--adapters", default=None, help="adapter store folder (default: under the cache, per model)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--max-batch", type=int, default=64, help="sequences decoded together")
    p.add_argument("--cache", default=None, help="artifact cache (default ~/.cache/lorachain or $LORACHAIN_CACHE)")
    p.add_argument("--served-model-name", default=None, help="name accepted as 'model' besides the hash")
    p.set_defaults(func=cmd_sidecar)

    p = sub.add_parser("da-server", help="run a local DA server speaking eigenda-proxy's REST API")
    p.add_argument("--datadir", required=True, help="where blobs are kept (LMDB)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3100)
    p.add_argument("--latency-ms", type=int, default=0, help="injected latency on every put and get")
    p.add_argument("--put-status", type=int, default=None, help="answer every put with this status (e.g. 503)")
    p.add_argument("--get-status", type=int, default=None, help="answer every get with this status (e.g. 418)")
    p.set_defaults(func=cmd_da_server)

    from lorachain import adapter_cli, attribution_cli, datanet_cli, factory_cli, rollup_cli

    adapter_cli.add_commands(sub)
    rollup_cli.add_commands(sub)
    datanet_cli.add_commands(sub)
    factory_cli.add_commands(sub)
    attribution_cli.add_commands(sub)

    p = sub.add_parser("model", help="base models: build the devnet model, convert checkpoints to exact artifacts")
    models = p.add_subparsers(dest="model_command", required=True)
    m = models.add_parser("init-devnet", help="build the devnet base model (deterministic; cached afterwards)")
    m.add_argument("--out", default=None, help="model folder (default ~/.cache/lorachain/devnet-model)")
    m.add_argument("--size", choices=["devnet", "tiny"], default="devnet", help="tiny: a seconds-long build for tests")
    m.add_argument("--seed", type=int, default=0)
    m.set_defaults(func=cmd_model_init_devnet)
    m = models.add_parser("convert", help="quantize a checkpoint folder into its exact artifact; print the hash")
    m.add_argument("--model", required=True, help="Hugging Face style Llama checkpoint folder")
    m.add_argument("--cache", default=None, help="artifact cache (default ~/.cache/lorachain or $LORACHAIN_CACHE)")
    m.set_defaults(func=cmd_model_convert)
    return parser


def cmd_sidecar(args: argparse.Namespace) -> int:
    from lorachain.sidecar.devnet_model import DEFAULT_OUT, build_devnet_model
    from lorachain.sidecar.server import serve

    model = args.model or str(build_devnet_model(DEFAULT_OUT))
    return serve(model, host=args.host, port=args.port, adapters=args.adapters, device=args.device,
                 max_batch=args.max_batch, cache=args.cache, model_name=args.served_model_name)  # fmt: skip


def cmd_da_server(args: argparse.Namespace) -> int:
    from lorachain.da_client.server import Faults, serve

    faults = Faults(latency_ms=args.latency_ms, put_status=args.put_status, get_status=args.get_status)
    serve(Path(args.datadir), args.host, args.port, faults)
    return 0


def cmd_model_init_devnet(args: argparse.Namespace) -> int:
    from lorachain.sidecar.devnet_model import DEFAULT_OUT, build_devnet_model

    print(build_devnet_model(args.out or DEFAULT_OUT, size=args.size, seed=args.seed))
    return 0


def cmd_model_convert(args: argparse.Namespace) -> int:
    from lorachain.sidecar.artifact import DEFAULT_CACHE, artifact_path, load_model

    cache = Path(args.cache).expanduser() if args.cache else DEFAULT_CACHE
    model = load_model(args.model, cache)
    print(json.dumps({"model_hash": "0x" + model.hash.hex(), "artifact": str(artifact_path(cache, model.hash))}))
    return 0


def main(argv: list[str] | None = None) -> int:
    from lorachain import adapter_cli

    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.log_level, args.log_format)
    try:
        return args.func(args)
    except (GenesisError, ChainError, SidecarError, FileExistsError, adapter_cli.CliError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

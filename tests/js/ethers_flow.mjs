// The everyday ethers v6 flow of a dApp developer, run against a lorachain devnet node.
//
// Usage: node tests/js/ethers_flow.mjs RPC_URL WS_URL ARTIFACT_JSON
//
// ARTIFACT_JSON is the MessageBoard build artifact ({abi, bytecode, deployedBytecode, ...}).
// On success prints one JSON summary object on stdout and exits 0; on the first failed check
// prints the error (with the JSON-RPC request/response ethers saw, when it has them) on stderr
// and exits 1. Run by tests/test_e2e_ethers.py.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { ContractFactory, HDNodeWallet, JsonRpcProvider, WebSocketProvider, ethers, parseEther } from "ethers";

const MNEMONIC = "test test test test test test test test test test test junk";
const CHAIN_ID = 901n;
const DEADLINE_MS = 60_000; // the whole flow; the pytest side has its own, longer, timeout
const EVENT_WAIT_MS = 15_000;
const PROVIDER_OPTIONS = { cacheTimeout: -1 };

function account(index, provider) {
    return HDNodeWallet.fromPhrase(MNEMONIC, undefined, `m/44'/60'/0'/0/${index}`).connect(provider);
}

/** Resolve with the value the listener hands over, or reject after `ms`. */
function waitFor(what, ms, register) {
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
        register((value) => {
            clearTimeout(timer);
            resolve(value);
        });
    });
}

/**
 * Remove every listener of a WebSocketProvider and wait until the node has answered the eth_unsubscribe
 * calls that sends, so that destroying the provider afterwards cancels nothing.
 *
 * ethers 6.17's SocketSubscriber.stop() fires eth_unsubscribe without handing back its promise, so
 * removeAllListeners() resolves before the node answers; a destroy() in that window rejects the request
 * ("provider destroyed; cancelled request", operation "eth_unsubscribe"), an unhandled rejection that
 * fails the script. The provider writes requests in the order they are made and the node answers one
 * connection's requests in order, so a request made after the unsubscriptions is answered after them.
 */
async function unsubscribeAll(ws) {
    await ws.removeAllListeners();
    await new Promise((resolve) => setTimeout(resolve, 0)); // the stop() callbacks have queued eth_unsubscribe
    await ws.send("eth_blockNumber", []); // answered after every eth_unsubscribe queued before it
}

/** Run `promise`, which must reject; return the error. */
async function rejection(what, promise) {
    try {
        await promise;
    } catch (err) {
        return err;
    }
    throw new assert.AssertionError({ message: `${what} should have been rejected` });
}

async function main() {
    const [rpcUrl, wsUrl, artifactPath] = process.argv.slice(2);
    if (!rpcUrl || !wsUrl || !artifactPath) {
        throw new Error("usage: node ethers_flow.mjs RPC_URL WS_URL ARTIFACT_JSON");
    }
    const artifact = JSON.parse(readFileSync(artifactPath, "utf8"));
    const summary = { ethersVersion: ethers.version };

    // --- provider basics -------------------------------------------------------------------
    // cacheTimeout -1: on an automining chain, ethers' default 250 ms sharing of identical
    // requests would hand back a stale "pending" nonce or "latest" balance right after a tx.
    const provider = new JsonRpcProvider(rpcUrl, undefined, PROVIDER_OPTIONS);
    provider.pollingInterval = 250;
    const network = await provider.getNetwork();
    assert.equal(network.chainId, CHAIN_ID, "chainId");
    const startBlock = await provider.getBlockNumber();
    assert.equal(typeof startBlock, "number");

    const wallet = account(0, provider);
    const recipient = account(1, provider);
    assert.equal(wallet.address, "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266", "mnemonic account 0");
    assert.equal(recipient.address, "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "mnemonic account 1");
    const balance0 = await provider.getBalance(wallet.address);
    assert.ok(balance0 >= parseEther("1000"), `account 0 should be funded, has ${balance0}`);
    Object.assign(summary, {
        chainId: Number(network.chainId),
        startBlock,
        account0: wallet.address,
        balance0: balance0.toString(),
    });

    // --- EIP-1559 value transfer -----------------------------------------------------------
    const feeData = await provider.getFeeData();
    assert.ok(feeData.maxFeePerGas !== null && feeData.maxPriorityFeePerGas !== null, "EIP-1559 fee data");
    const value = parseEther("1.25");
    assert.equal(await provider.estimateGas({ from: wallet.address, to: recipient.address, value }), 21000n);
    const transferTx = await wallet.sendTransaction({ to: recipient.address, value, type: 2 });
    assert.equal(transferTx.type, 2, "transaction type");
    assert.equal(transferTx.chainId, CHAIN_ID, "signed chainId");
    const transfer = await transferTx.wait();
    assert.equal(transfer.status, 1, "transfer status");
    assert.equal(transfer.hash, transferTx.hash);
    assert.equal(transfer.gasUsed, 21000n, "transfer gasUsed");
    assert.equal(transfer.type, 2, "receipt type");
    const fee = transfer.gasUsed * transfer.gasPrice; // gasPrice is the receipt's effectiveGasPrice
    // Balances at explicit heights: ethers caches identical requests (e.g. "latest") for 250 ms.
    const [at, before] = [transfer.blockNumber, transfer.blockNumber - 1];
    const recipientDelta =
        (await provider.getBalance(recipient.address, at)) - (await provider.getBalance(recipient.address, before));
    const senderDelta = (await provider.getBalance(wallet.address, before)) - (await provider.getBalance(wallet.address, at));
    assert.equal(recipientDelta, value, "recipient balance delta");
    assert.equal(senderDelta, value + fee, "sender balance delta (value + gasUsed * effectiveGasPrice)");
    const minedTx = await provider.getTransaction(transferTx.hash);
    assert.equal(minedTx.blockNumber, transfer.blockNumber);
    assert.equal(minedTx.from, wallet.address);
    assert.equal(minedTx.maxFeePerGas, transferTx.maxFeePerGas);
    const transferBlock = await provider.getBlock(transfer.blockNumber);
    assert.ok(transferBlock.transactions.includes(transferTx.hash), "block lists the transfer");
    assert.ok(transferBlock.baseFeePerGas !== null, "London block has baseFeePerGas");
    summary.transfer = {
        hash: transferTx.hash,
        status: transfer.status,
        type: transfer.type,
        blockNumber: transfer.blockNumber,
        gasUsed: transfer.gasUsed.toString(),
        effectiveGasPrice: transfer.gasPrice.toString(),
        recipientDelta: recipientDelta.toString(),
    };

    // --- deploy ----------------------------------------------------------------------------
    const factory = new ContractFactory(artifact.abi, artifact.bytecode, wallet);
    const deployed = await factory.deploy();
    await deployed.waitForDeployment();
    const address = await deployed.getAddress();
    const deployTx = deployed.deploymentTransaction();
    const deployReceipt = await deployTx.wait();
    assert.equal(deployReceipt.status, 1, "deploy status");
    assert.equal(deployReceipt.contractAddress, address, "receipt contractAddress");
    assert.equal(address, ethers.getCreateAddress({ from: wallet.address, nonce: deployTx.nonce }));
    assert.equal(await provider.getCode(address), artifact.deployedBytecode, "runtime code");
    const board = deployed.connect(wallet);
    summary.contract = { address, deployBlock: deployReceipt.blockNumber, gasUsed: deployReceipt.gasUsed.toString() };

    // --- transact and parse the event ------------------------------------------------------
    const text = "hello from ethers";
    const postGas = await board.post.estimateGas(text);
    assert.ok(postGas > 21000n && postGas < 500000n, `estimateGas(post) = ${postGas}`);
    const postTx = await board.post(text);
    const postReceipt = await postTx.wait();
    assert.equal(postReceipt.status, 1, "post status");
    assert.ok(postReceipt.gasUsed <= postGas, `gasUsed ${postReceipt.gasUsed} <= estimate ${postGas}`);
    assert.equal(postReceipt.logs.length, 1, "one log");
    const parsed = board.interface.parseLog(postReceipt.logs[0]);
    assert.equal(parsed.name, "MessagePosted");
    assert.equal(parsed.args.author, wallet.address);
    assert.equal(parsed.args.id, 0n);
    assert.equal(parsed.args.text, text);
    const eventLog = postReceipt.logs[0]; // ContractTransactionReceipt decodes logs into EventLogs
    assert.equal(eventLog.eventName, "MessagePosted");
    assert.equal(eventLog.address, address);
    assert.equal(eventLog.transactionHash, postTx.hash);
    assert.equal(eventLog.blockNumber, postReceipt.blockNumber);
    assert.equal(eventLog.index, 0);
    summary.post = {
        hash: postTx.hash,
        blockNumber: postReceipt.blockNumber,
        gasUsed: postReceipt.gasUsed.toString(),
        estimateGas: postGas.toString(),
        event: { name: parsed.name, author: parsed.args.author, id: Number(parsed.args.id), text: parsed.args.text },
    };

    // --- views -----------------------------------------------------------------------------
    const count = await board.count();
    assert.equal(count, 1n, "count()");
    const message = await board.messages(0);
    const postBlock = await provider.getBlock(postReceipt.blockNumber);
    assert.equal(message.author, wallet.address);
    assert.equal(message.postedAt, BigInt(postBlock.timestamp), "postedAt is the block timestamp");
    assert.equal(message.tips, 0n);
    assert.equal(message.text, text);
    assert.equal(await board.MAX_MESSAGE_BYTES(), 280n);
    summary.count = Number(count);
    summary.message = { author: message.author, postedAt: Number(message.postedAt), text: message.text };

    // --- reverts ---------------------------------------------------------------------------
    const nonceBefore = await provider.getTransactionCount(wallet.address);
    const empty = await rejection('post("")', board.post(""));
    assert.equal(empty.code, "CALL_EXCEPTION", `post("") error code: ${empty.message}`);
    assert.equal(empty.reason, "empty message", `post("") reason: ${empty.message}`);
    assert.equal(empty.revert?.name, "Error");
    assert.deepEqual([...empty.revert.args], ["empty message"]);
    assert.ok(empty.shortMessage.includes("empty message"), `shortMessage: ${empty.shortMessage}`);
    assert.equal(await provider.getTransactionCount(wallet.address), nonceBefore, "nothing was sent");
    const emptyCall = await rejection('post.staticCall("")', board.post.staticCall(""));
    assert.equal(emptyCall.code, "CALL_EXCEPTION");
    assert.equal(emptyCall.reason, "empty message", `staticCall reason: ${emptyCall.message}`);
    const emptyEstimate = await rejection('post.estimateGas("")', board.post.estimateGas(""));
    assert.equal(emptyEstimate.reason, "empty message", `estimateGas reason: ${emptyEstimate.message}`);
    // A custom error: the contract decodes it on a call; on a send, the provider's error carries
    // the raw revert data for the dApp to decode with the ABI.
    const long = "x".repeat(281);
    const tooLong = await rejection("post.staticCall(281 bytes)", board.post.staticCall(long));
    assert.equal(tooLong.code, "CALL_EXCEPTION");
    assert.equal(tooLong.revert?.name, "MessageTooLong", `custom error: ${tooLong.message}`);
    assert.deepEqual([...tooLong.revert.args], [281n, 280n]);
    const tooLongSend = await rejection("post(281 bytes)", board.post(long));
    assert.equal(tooLongSend.code, "CALL_EXCEPTION");
    const decoded = board.interface.parseError(tooLongSend.data);
    assert.equal(decoded?.name, "MessageTooLong", `revert data of the send: ${tooLongSend.message}`);
    assert.deepEqual([...decoded.args], [281n, 280n]);
    const noSuch = await rejection("messages(5)", board.messages(5));
    assert.equal(noSuch.reason, "no such message", `view revert: ${noSuch.message}`);
    summary.revert = {
        code: empty.code,
        reason: empty.reason,
        shortMessage: empty.shortMessage,
        action: empty.action,
        customError: tooLong.revert.name,
        customErrorArgs: [...tooLong.revert.args].map(Number),
        viewReason: noSuch.reason,
    };

    // --- payable call, then logs by filter -------------------------------------------------
    const tipTx = await board.connect(recipient).tip(0, { value: parseEther("0.01") });
    assert.equal((await tipTx.wait()).status, 1, "tip status");
    assert.equal(await board.balanceOf(wallet.address), parseEther("0.01"), "tip credited");

    const byAuthor = await board.queryFilter(board.filters.MessagePosted(wallet.address), startBlock);
    assert.equal(byAuthor.length, 1, "queryFilter by author");
    assert.equal(byAuthor[0].args.text, text);
    assert.equal(byAuthor[0].transactionHash, postTx.hash);
    const byId = await board.queryFilter(board.filters.MessagePosted(null, 0), deployReceipt.blockNumber, "latest");
    assert.equal(byId.length, 1, "queryFilter by id");
    const nobody = await board.queryFilter(board.filters.MessagePosted(recipient.address), startBlock);
    assert.equal(nobody.length, 0, "queryFilter for an author with no posts");
    const tips = await board.queryFilter("Tipped", startBlock);
    assert.equal(tips.length, 1, "queryFilter by event name");
    assert.equal(tips[0].args.tipper, recipient.address);
    assert.equal(tips[0].args.amount, parseEther("0.01"));
    const allLogs = await provider.getLogs({ address, fromBlock: startBlock, toBlock: "latest" });
    assert.equal(allLogs.length, 2, "getLogs by address");
    summary.queryFilter = { byAuthor: byAuthor.length, byId: byId.length, nobody: nobody.length, tipped: tips.length };

    // --- WebSocket: block event and contract event listener ---------------------------------
    const ws = new WebSocketProvider(wsUrl, undefined, PROVIDER_OPTIONS);
    try {
        const wsNetwork = await ws.getNetwork();
        assert.equal(wsNetwork.chainId, CHAIN_ID, "ws chainId");
        const wsBoard = board.connect(ws);
        const gotBlock = waitFor("a block event", EVENT_WAIT_MS, (done) => ws.on("block", done));
        const gotEvent = waitFor("a MessagePosted event", EVENT_WAIT_MS, (done) =>
            wsBoard.on("MessagePosted", (author, id, eventText, payload) =>
                done({ author, id, text: eventText, payload }),
            ),
        );
        // The node handles one connection's requests in order: once this answers, the
        // eth_subscribe calls sent by the listeners above have been served.
        await ws.getBlockNumber();
        const second = "second post, seen over websocket";
        const secondTx = await board.post(second);
        const secondReceipt = await secondTx.wait();
        assert.equal(secondReceipt.status, 1);
        const [blockNumber, event] = await Promise.all([gotBlock, gotEvent]);
        assert.equal(blockNumber, secondReceipt.blockNumber, "block event number");
        assert.equal(event.author, wallet.address);
        assert.equal(event.id, 1n);
        assert.equal(event.text, second);
        assert.equal(event.payload.log.transactionHash, secondTx.hash);
        assert.equal(event.payload.log.blockNumber, secondReceipt.blockNumber);
        await wsBoard.removeAllListeners();
        await unsubscribeAll(ws);
        assert.equal(await board.count(), 2n, "count() after the second post");
        summary.ws = {
            blockEvent: blockNumber,
            event: { author: event.author, id: Number(event.id), text: event.text, blockNumber: event.payload.log.blockNumber },
        };
    } finally {
        ws.destroy();
    }

    summary.endBlock = await provider.getBlockNumber();
    provider.destroy();
    return summary;
}

const deadline = setTimeout(() => {
    process.stderr.write(`ethers_flow: timed out after ${DEADLINE_MS} ms\n`);
    process.exit(2);
}, DEADLINE_MS);

main().then(
    (summary) => {
        clearTimeout(deadline);
        process.stdout.write(JSON.stringify(summary) + "\n");
        process.exit(0);
    },
    (err) => {
        clearTimeout(deadline);
        process.stderr.write(`ethers_flow FAILED: ${err?.stack ?? err}\n`);
        for (const key of ["code", "shortMessage", "reason", "info", "error", "payload", "data", "transaction"]) {
            if (err && err[key] !== undefined) {
                process.stderr.write(`  ${key}: ${JSON.stringify(err[key], (_, v) => (typeof v === "bigint" ? v.toString() : v))}\n`);
            }
        }
        process.exit(1);
    },
);

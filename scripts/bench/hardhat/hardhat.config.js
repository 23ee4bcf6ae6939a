// Minimal config for `hardhat node` as the reference target of scripts/bench/rpc.
// Chain id 31337 and the default test mnemonic are Hardhat's defaults; they are
// spelled out so the benchmark's assumptions are visible here.
module.exports = {
  networks: {
    hardhat: {
      chainId: 31337,
      accounts: {
        mnemonic: "test test test test test test test test test test test junk",
        count: 20,
      },
    },
  },
};

"""lorachain.precompiles."""

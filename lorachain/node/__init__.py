"""lorachain.node."""

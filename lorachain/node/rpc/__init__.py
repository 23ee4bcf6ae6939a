"""lorachain.node.rpc."""

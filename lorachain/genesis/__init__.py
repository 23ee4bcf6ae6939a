"""lorachain.genesis."""

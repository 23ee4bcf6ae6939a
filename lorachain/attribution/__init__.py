"""lorachain.attribution."""

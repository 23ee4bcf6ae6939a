"""lorachain.da_client."""

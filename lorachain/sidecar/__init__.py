"""lorachain.sidecar."""

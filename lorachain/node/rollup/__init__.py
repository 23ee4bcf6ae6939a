"""OP-Stack rollup wire formats and rules: frames, channels, batches (and, to come, deposits and derivation)."""

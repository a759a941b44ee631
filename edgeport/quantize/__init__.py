"""Per-layer int8 sensitivity and the mixed-precision search."""

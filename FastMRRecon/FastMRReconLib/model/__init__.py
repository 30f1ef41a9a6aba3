"""The reconstruction network, its noise-level input and the Reconstructor that applies it."""

"""Training pairs, the training loop and the build of the shipped model."""

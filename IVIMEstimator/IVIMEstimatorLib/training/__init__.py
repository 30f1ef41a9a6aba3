"""Synthetic training signals, the training loop and the build of the shipped networks."""

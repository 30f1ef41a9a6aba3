"""Acquisition physics: FFT, coil maps, sampling masks, SENSE, scan simulation."""

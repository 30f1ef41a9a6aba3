"""Objects to scan: synthesised heads (SynthSeg label maps) and real anatomy images."""

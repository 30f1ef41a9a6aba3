"""Digital placenta phantoms, static and moving."""

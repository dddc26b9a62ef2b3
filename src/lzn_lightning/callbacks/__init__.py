"""Evaluation callbacks (sample grids, FID, linear probe, kNN, zone accuracy, reconstruction)."""

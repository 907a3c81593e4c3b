"""Frozen 3D encoders and generators, one file per model, plus the shipped mini weights."""

"""Sparse-annotation fine-tuning: learn from a few painted slices, then segment the whole volume."""

"""Segmenting a volume: preprocessing, sliding windows, RoI localization, post-processing."""

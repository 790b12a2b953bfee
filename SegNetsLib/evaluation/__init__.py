"""Metrics and the classical baselines SegNets is compared with."""

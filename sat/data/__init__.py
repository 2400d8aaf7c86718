"""Datasets, noise injection and data loading."""

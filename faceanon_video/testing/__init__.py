"""Helpers for tests, benchmarks and evaluation: synthetic clips with exact ground truth (``synthetic``)."""

"""Tiny offline models for tests and benchmarks (`python -m ops.models.builder`), never fetched from a hub."""

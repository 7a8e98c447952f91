"""Benchmarks (`python -m ops.bench.<name>`), their shared workloads and report, and their results (`results/`)."""

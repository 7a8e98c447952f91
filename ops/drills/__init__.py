"""Fault and load drills against a real fleet (`python -m ops.drills.<name>`); figures in ops/RELIABILITY.md."""

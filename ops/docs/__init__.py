"""Pictures in the docs and the tools that make them (`python -m ops.docs.flower_screenshot`)."""

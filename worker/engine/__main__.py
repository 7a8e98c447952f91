"""`python -m worker.engine --fd N`: the engine process (worker/engine/process.py)."""

import os
import sys

# OpenMP threads sleep once a parallel region ends instead of spinning for the next one, so they do not take
# the cores the worker's Celery process and the API need between passes (set before torch loads libgomp)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from worker.engine.process import main  # noqa: E402

sys.exit(main())

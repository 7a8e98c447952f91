"""`python -m worker.engine --fd N`: the engine process (worker/engine/process.py)."""

import sys

from worker.engine.process import main

sys.exit(main())

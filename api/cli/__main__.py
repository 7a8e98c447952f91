"""`python -m api.cli ...` is `rerank-fleet ...`."""

import sys

from api.cli.main import main

sys.exit(main())

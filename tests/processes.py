"""Real processes for full-stack tests; the helpers live in ops/processes.py, shared with the drills."""

from ops.processes import (  # noqa: F401
    REPO_ROOT,
    Proc,
    child_env,
    restart_redis,
    silent_worker,
    start_api,
    start_flower,
    start_redis,
    start_worker,
    worker_report,
)
